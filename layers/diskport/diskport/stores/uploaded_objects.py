"""Uploaded image files in the watched bucket: the only code that reads their metadata and writes their tags.

An upload is addressed by the version its S3 event names: the version id in a versioned bucket, otherwise
the ETag, so that a file overwritten after its event is never mistaken for the file the event announced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from diskport.errors import SourceError
from diskport.observability import logger
from diskport.stores import aws, aws_errors
from diskport.stores.source_objects import S3ObjectSource

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import TagTypeDef
else:
    S3Client = Any
    TagTypeDef = dict

# The tag that leads from an uploaded file to the job importing it.
JOB_ID_TAG = "diskport-job-id"
# S3 holds at most this many tags on one object.
MAX_OBJECT_TAGS = 10

# Tagging refusals that a retry would not change (besides the object being gone or denied); the import goes on
# without the tag.
_UNTAGGABLE_CODES = {"InvalidTag", "BadRequest", "InvalidArgument"}


class UploadedObject(BaseModel):
    """One version of a file in the watched bucket, as its ObjectCreated event names it."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    version_id: str | None = None
    etag: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def quoted_etag(self) -> str:
        """The ETag as S3 writes it in headers (events carry it without the quotes)."""
        return self.etag if self.etag.startswith('"') else f'"{self.etag}"'


@dataclass(frozen=True)
class StoredUpload:
    """What S3 holds for the uploaded version: its size, ETag and user metadata (`x-amz-meta-*`)."""

    size: int
    etag: str
    metadata: dict[str, str]


class UploadedObjects:
    """The watched bucket's files, read and tagged one version at a time."""

    def __init__(self, s3_client: S3Client | None = None) -> None:
        self._s3: S3Client = s3_client if s3_client is not None else aws.client("s3")

    def describe(self, upload: UploadedObject) -> StoredUpload:
        """The uploaded version's size, ETag and metadata.

        Raises SourceError (job FAIL) when the version is gone or cannot be read; any other failure (throttling,
        5xx) propagates, so the notification is delivered again.
        """
        try:
            if upload.version_id:
                head = self._s3.head_object(Bucket=upload.bucket, Key=upload.key, VersionId=upload.version_id)
                # The version outlives a DeleteObject (a delete marker covers it) and an overwrite, but the import
                # reads the file as it is now, pinned to the ETag: the file must still hold this content.
                self._s3.head_object(Bucket=upload.bucket, Key=upload.key, IfMatch=str(head["ETag"]))
            else:
                head = self._s3.head_object(Bucket=upload.bucket, Key=upload.key, IfMatch=upload.quoted_etag)
        except ClientError as error:
            # The object (or the version) no longer exists, or the ETag no longer matches: the upload was deleted
            # or replaced.
            if _gone_or_replaced(error):
                raise SourceError(
                    f"The file {upload.location} was deleted or replaced before its import started; "
                    "a file uploaded in its place is imported by its own job.",
                    code="IMG.0121",
                ) from error
            if aws_errors.is_denied(error):
                raise SourceError(
                    f"The service may not read {upload.location}: grant it s3:GetObject and s3:GetObjectVersion "
                    "on the watched bucket, then upload the file again."
                ) from error
            raise
        return StoredUpload(
            size=int(head["ContentLength"]),
            etag=str(head["ETag"]),
            metadata={name.lower(): value for name, value in head.get("Metadata", {}).items()},
        )

    def byte_source(self, upload: UploadedObject, stored: StoredUpload) -> S3ObjectSource:
        """The uploaded file's bytes, for reading its header; every read is pinned to its ETag."""
        # Headers and tables sit in the first and last few MiB: small pages keep the reads small.
        return S3ObjectSource(
            self._s3, upload.bucket, upload.key, etag=stored.etag, size=stored.size, page_size=256 * 1024
        )

    def tag_with_job(self, upload: UploadedObject, job_id: str) -> bool:
        """Add the `diskport-job-id` tag to the uploaded version, keeping its other tags.

        False (and a warning) when S3 refuses for a reason a retry would not change: the version is gone, the
        service may not tag it, or it already carries the 10 tags S3 allows. Throttling and 5xx propagate.
        """
        try:
            tags = self._tags(upload)
            if {"Key": JOB_ID_TAG, "Value": job_id} in tags:
                return True
            kept = [tag for tag in tags if tag["Key"] != JOB_ID_TAG]
            if len(kept) >= MAX_OBJECT_TAGS:
                logger.warning(
                    "The uploaded file carries the most tags S3 allows; its job id is not tagged",
                    extra={"location": upload.location, "job_id": job_id},
                )
                return False
            self._put_tags(upload, [*kept, {"Key": JOB_ID_TAG, "Value": job_id}])
        except ClientError as error:
            if not (
                _gone_or_replaced(error)
                or aws_errors.is_denied(error)
                or aws_errors.error_code(error) in _UNTAGGABLE_CODES
            ):
                raise
            logger.warning(
                "Could not tag the uploaded file with its job id",
                extra={
                    "location": upload.location,
                    "job_id": job_id,
                    "error": aws_errors.error_code(error) or aws_errors.http_status(error),
                },
            )
            return False
        return True

    # Tagging takes no IfMatch: an unversioned file is tagged as it is now.
    def _tags(self, upload: UploadedObject) -> list[TagTypeDef]:
        if upload.version_id:
            answer = self._s3.get_object_tagging(Bucket=upload.bucket, Key=upload.key, VersionId=upload.version_id)
        else:
            answer = self._s3.get_object_tagging(Bucket=upload.bucket, Key=upload.key)
        return list(answer["TagSet"])

    def _put_tags(self, upload: UploadedObject, tags: list[TagTypeDef]) -> None:
        if upload.version_id:
            self._s3.put_object_tagging(
                Bucket=upload.bucket, Key=upload.key, VersionId=upload.version_id, Tagging={"TagSet": tags}
            )
        else:
            self._s3.put_object_tagging(Bucket=upload.bucket, Key=upload.key, Tagging={"TagSet": tags})


def _gone_or_replaced(error: ClientError) -> bool:
    return aws_errors.is_gone(error) or aws_errors.is_precondition_failed(error)
