"""Uploaded image files in the watched bucket: the only code that reads their metadata and writes their tags.

An upload is addressed by the version its S3 event names: the version id in a versioned bucket, otherwise
the ETag, so that a file overwritten after its event is never mistaken for the file the event announced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from diskport import aws
from diskport.engine import S3ObjectSource
from diskport.errors import SourceError
from diskport.observability import logger

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

# The object (or the version) no longer exists, or the ETag no longer matches: the upload was deleted or
# replaced. 405 is S3's answer for a version that has become a delete marker.
_GONE_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "405", "MethodNotAllowed", "412", "PreconditionFailed"}
_DENIED_CODES = {"403", "AccessDenied", "Forbidden"}
# Tagging refusals that a retry would not change; the import goes on without the tag.
_UNTAGGABLE_CODES = _GONE_CODES | _DENIED_CODES | {"InvalidTag", "BadRequest", "InvalidArgument"}


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
            else:
                head = self._s3.head_object(Bucket=upload.bucket, Key=upload.key, IfMatch=upload.quoted_etag)
        except ClientError as error:
            code = _error_code(error)
            if code in _GONE_CODES:
                raise SourceError(
                    f"The file {upload.location} was deleted or replaced before its import started; "
                    "a file uploaded in its place is imported by its own job.",
                    code="IMG.0121",
                ) from error
            if code in _DENIED_CODES:
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
            if _error_code(error) not in _UNTAGGABLE_CODES:
                raise
            logger.warning(
                "Could not tag the uploaded file with its job id",
                extra={"location": upload.location, "job_id": job_id, "error": _error_code(error)},
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


def _error_code(error: ClientError) -> str:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status)
