"""The source image file in S3: found, readable, in storage class Standard, not empty — noted by its ETag.

This module and the engine's `S3ObjectSource` are the only code that reads the user's bucket.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from diskport import aws
from diskport.errors import SourceError
from diskport.pipeline.step_errors import THROTTLING_CODES


class SourceObject(BaseModel):
    """The version of the file an import reads: every later read is pinned to `etag`."""

    bucket: str
    key: str
    etag: str
    size: int
    storage_class: str = "STANDARD"
    # The account that must own the bucket (S3 refuses every read otherwise); None: no check (local mode).
    bucket_owner: str | None = None

    @property
    def location(self) -> str:
        return f"{self.bucket}:{self.key}"


def find_source(
    bucket: str,
    key: str,
    s3_client: Any | None = None,
    *,
    expected_etag: str | None = None,
    bucket_owner: str | None = None,
) -> SourceObject:
    """The source object's facts, or the SourceError that tells the user what is wrong with it.

    With `expected_etag`, only that version of the file will do: a file replaced since is refused. With
    `bucket_owner`, S3 answers 403 (IMG.0069) for a bucket another account owns.
    """
    s3_client = s3_client or aws.client("s3")
    owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}
    _check_bucket(s3_client, bucket, owner)
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key, **owner)
    except ClientError as error:
        if _status(error) == 404:
            raise SourceError(
                f"The object '{key}' does not exist in bucket '{bucket}'; check image_url.", code="IMG.0121"
            ) from error
        if _status(error) == 403:
            raise SourceError(
                f"The service may not read '{key}' in bucket '{bucket}': grant it s3:GetObject on the object."
            ) from error
        raise
    if expected_etag is not None and head["ETag"].strip('"') != expected_etag.strip('"'):
        raise SourceError(
            f"The object '{key}' in bucket '{bucket}' was replaced after this import was requested; "
            "the file that replaced it is imported by its own job."
        )
    storage_class = str(head.get("StorageClass") or "STANDARD")
    if storage_class != "STANDARD":
        raise SourceError(
            f"The object '{key}' is in storage class {storage_class}; only Standard objects can be imported. "
            "Copy it to the Standard storage class, then import it again."
        )
    size = int(head["ContentLength"])
    if size == 0:
        raise SourceError(f"The object '{key}' in bucket '{bucket}' is empty (0 bytes).")
    return SourceObject(
        bucket=bucket,
        key=key,
        etag=str(head["ETag"]),
        size=size,
        storage_class=storage_class,
        bucket_owner=bucket_owner,
    )


def _check_bucket(s3_client: Any, bucket: str, owner: dict[str, str]) -> None:
    # HEAD on a missing object of an unreadable bucket answers 403 like a missing bucket does; asking about the
    # bucket first tells "no such object" (IMG.0121) from "no access to the bucket" (IMG.0069).
    try:
        s3_client.head_bucket(Bucket=bucket, **owner)
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code", "")) in THROTTLING_CODES:
            raise
        if _status(error) in (301, 400, 403, 404):
            reason = "does not exist" if _status(error) == 404 else "cannot be read by the service"
            raise SourceError(
                f"The bucket '{bucket}' {reason}: check image_url and the bucket policy.", code="IMG.0069"
            ) from error
        raise


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
