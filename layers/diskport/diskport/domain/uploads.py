"""Imports started by uploads: a file copied into the watched bucket becomes an import job.

The upload convention (docs/uploads.md): the import parameters are the object's user metadata, one
`x-amz-meta-ims-*` entry per field of the API body, each optional. Without them the name comes from the file
name, os_type is Linux and min_disk is the larger of 40 and the virtual size read from the file's header.
The request then goes through the same rules and the same `start_import` as the API; an upload that breaks a
rule gets a job that is FAIL from the start, with the rule's IMS code and reason.

Each object version has one job: its id is derived from the bucket, key and version (or ETag), so however
often S3 or SQS deliver the event, every delivery lands on the same job.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import S3Model, S3RecordModel
from pydantic import BaseModel, ValidationError

from diskport.domain.imports import record_refused_import, resume_import, start_import
from diskport.domain.requests import MAX_DISK_GB, MIN_DISK_GB, NAME_MAX_LENGTH, CreateDataImageRequest, ims_code_of
from diskport.engine import open_disk
from diskport.errors import (
    ImportFailedError,
    RequestRejectedError,
    ServiceUnavailableError,
    SourceError,
    engine_errors_as_ims,
)
from diskport.observability import logger
from diskport.settings import Settings, get_settings
from diskport.stores import Stores, aws_errors
from diskport.stores.jobs import Job, JobStatus
from diskport.stores.uploaded_objects import StoredUpload, UploadedObject, UploadedObjects

UPLOAD_ORIGIN = "upload"
# The file name endings the watched bucket notifies (template.yaml); the default name drops them.
IMAGE_SUFFIXES = (".qcow2", ".vmdk", ".vhd", ".vhdx", ".vdi", ".raw", ".img")
# User metadata (`x-amz-meta-<name>`) → field of the API body.
METADATA_FIELDS = {
    "ims-name": "name",
    "ims-description": "description",
    "ims-os-type": "os_type",
    "ims-min-disk": "min_disk",
    "ims-cmk-id": "cmk_id",
    "ims-tags": "tags",
}
METADATA_PREFIX = "ims-"
DEFAULT_NAME = "data-image"
GIB = 1024**3
# S3 repeats an event within minutes and SQS keeps a message for days; a repeat after the record expires
# still finds the job by its derived id, so the record only has to outlive the burst.
IDEMPOTENCY_EXPIRY_SECONDS = 24 * 3600

_JOB_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://diskport/upload-jobs")
_DIGITS = re.compile(r"[0-9]+")


class UploadImport(BaseModel):
    """The job an upload led to (what the trigger remembers for each object version)."""

    job_id: str
    status: JobStatus
    origin: str = UPLOAD_ORIGIN


def uploads_in(message_body: str, settings: Settings | None = None) -> list[UploadedObject]:
    """The files an SQS message from the watched bucket announces as created; none for S3's test event.

    The records are read with Powertools' `S3Model`, which holds each to the structure AWS documents. Raises
    RequestRejectedError (IMG.0001) for a message that is not an S3 event notification of the watched bucket,
    so it is retried and ends in the dead-letter queue rather than being dropped unseen.
    """
    watched_bucket = (settings or get_settings()).watched_bucket
    try:
        message = json.loads(message_body)
    except ValueError as error:
        raise RequestRejectedError("IMG.0001", f"The message is not JSON, so no S3 notification: {error}") from error
    # S3 sends this once, when the bucket's notification is configured; it has no Records.
    if isinstance(message, dict) and message.get("Event") == "s3:TestEvent":
        return []
    try:
        notification = S3Model.model_validate(message)
    # S3RecordModel's own check reads `eventName` and `s3.object` before they are validated: a record without
    # them fails with AttributeError or TypeError instead of a ValidationError.
    except (ValidationError, AttributeError, TypeError) as error:
        raise RequestRejectedError("IMG.0001", f"The message is not an S3 event notification: {error}") from error
    if not notification.Records:
        raise RequestRejectedError("IMG.0001", "The message is an S3 notification without Records.")
    created = [record for record in notification.Records if record.eventName.startswith("ObjectCreated:")]
    return [_announced(record, watched_bucket) for record in created]


def _announced(record: S3RecordModel, watched_bucket: str) -> UploadedObject:
    bucket = record.s3.bucket.name
    if watched_bucket and bucket != watched_bucket:
        raise RequestRejectedError(
            "IMG.0001", f"The S3 event is about bucket '{bucket}', not the watched bucket '{watched_bucket}'."
        )
    announced = record.s3.object
    if announced is None or not (announced.versionId or announced.eTag):
        raise RequestRejectedError("IMG.0001", "The S3 event names neither a version id nor an ETag.")
    return UploadedObject(
        bucket=bucket,
        # S3 writes keys in events form-encoded: '+' for a space, %XX for anything else.
        key=unquote_plus(announced.key),
        version_id=announced.versionId or None,
        etag=announced.eTag or "",
    )


def job_id_of(upload: UploadedObject) -> str:
    """The job id of an object version: the same for every delivery of its event, 32 hex characters."""
    version = upload.version_id or upload.etag.strip('"')
    return uuid.uuid5(_JOB_ID_NAMESPACE, f"{upload.bucket}\n{upload.key}\n{version}").hex


def upload_project_id(settings: Settings) -> str:
    """The project that owns imports started by uploads: the stack's account, or in local mode the local project
    (the one every local caller acts for), so the CLI sees those jobs."""
    return settings.local_project_id if settings.project_id_source == "local" else settings.upload_project_id


def default_name(key: str) -> str:
    """An image name made from the file name: image suffix dropped, characters IMS refuses turned into '_',
    no space at either end, at most 128 characters."""
    file_name = key.rpartition("/")[2]
    stem, dot, suffix = file_name.rpartition(".")
    if dot and stem and f".{suffix.lower()}" in IMAGE_SUFFIXES:
        file_name = stem
    name = "".join(character if character.isalnum() or character in "-_. " else "_" for character in file_name)
    return name.strip(" ")[:NAME_MAX_LENGTH].strip(" ") or DEFAULT_NAME


def default_min_disk(virtual_size: int) -> int:
    """The smallest min_disk that holds the virtual disk: whole GB, never under 40."""
    return max(MIN_DISK_GB, math.ceil(virtual_size / GIB))


def default_fields(upload: UploadedObject) -> dict[str, Any]:
    """The API body of an upload without metadata, but for min_disk (which needs the file's header)."""
    return {"name": default_name(upload.key), "image_url": f"{upload.bucket}:{upload.key}", "os_type": "Linux"}


def request_fields_of(upload: UploadedObject, metadata: dict[str, str]) -> dict[str, Any]:
    """The API body an upload stands for: the default fields, overridden by `ims-*` metadata.

    Values are passed on as given (numbers made ints), for the API's rules to judge; an unknown `ims-*` name
    is refused (IMG.0001) rather than ignored, since it is most likely a misspelt field.
    """
    unknown = sorted(name for name in metadata if name.startswith(METADATA_PREFIX) and name not in METADATA_FIELDS)
    if unknown:
        raise RequestRejectedError(
            "IMG.0001",
            f"Unknown upload metadata {', '.join('x-amz-meta-' + name for name in unknown)}; the service reads "
            f"{', '.join('x-amz-meta-' + name for name in METADATA_FIELDS)}.",
        )
    fields = default_fields(upload)
    for metadata_name, field in METADATA_FIELDS.items():
        if metadata_name in metadata:
            fields[field] = _field_value(field, _decoded(metadata[metadata_name]))
    return fields


def import_upload(upload: UploadedObject, stores: Stores) -> UploadImport:
    """Give the uploaded version its one job, started or FAIL, and tag the file with the job id.

    Failures of the service's own dependencies (throttling, DynamoDB, S3 5xx) propagate, so the notification
    is delivered again; everything wrong with the file or its metadata ends in the job.
    """
    job = stores.jobs.get(job_id_of(upload))
    if job is None:
        job = _create_job(upload, stores)
    elif job.status == "INIT":
        # An earlier delivery recorded the job; its execution may not have started before that attempt ended.
        resume_import(job, stores)
    stores.uploads.tag_with_job(upload, job.job_id)
    return UploadImport(job_id=job.job_id, status=job.status)


def _create_job(upload: UploadedObject, stores: Stores) -> Job:
    objects = stores.uploads
    job_id = job_id_of(upload)
    project_id = upload_project_id(stores.settings)
    fields = default_fields(upload)
    try:
        stored = objects.describe(upload)
        fields = request_fields_of(upload, stored.metadata)
        if "min_disk" not in fields:
            fields["min_disk"] = _min_disk_for(upload, stored, objects)
        request = _validated(fields)
    except (RequestRejectedError, ImportFailedError) as refusal:
        logger.info(
            "Upload refused", extra={"location": upload.location, "code": refusal.code, "reason": refusal.reason}
        )
        return record_refused_import(fields, project_id, refusal, stores, origin=UPLOAD_ORIGIN, job_id=job_id)
    return start_import(request, project_id, stores, origin=UPLOAD_ORIGIN, job_id=job_id, source_etag=stored.etag)


def _min_disk_for(upload: UploadedObject, stored: StoredUpload, objects: UploadedObjects) -> int:
    """The default min_disk, from the virtual size in the file's header (the engine runs its checks on the way)."""
    try:
        with engine_errors_as_ims(), open_disk(objects.byte_source(upload, stored)) as disk:
            virtual_size = disk.virtual_size
    except SourceError as error:
        if error.__cause__ is not None and aws_errors.is_transient(error.__cause__):
            raise ServiceUnavailableError(f"Reading {upload.location} failed for now: {error.reason}") from error
        raise
    min_disk = default_min_disk(virtual_size)
    if min_disk > MAX_DISK_GB:
        raise RequestRejectedError(
            "IMG.0055",
            f"The virtual disk in {upload.location} is {min_disk} GB; images of at most {MAX_DISK_GB} GB can be "
            "imported.",
        )
    return min_disk


def _validated(fields: dict[str, Any]) -> CreateDataImageRequest:
    try:
        return CreateDataImageRequest.model_validate(fields)
    except ValidationError as error:
        raise ims_code_of(error) from error


def _field_value(field: str, value: str) -> Any:
    if field == "min_disk":
        return int(value) if _DIGITS.fullmatch(value.strip()) else value
    if field == "tags":
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    return value


def _decoded(value: str) -> str:
    """A metadata value, with RFC 2047 encoded words (`=?UTF-8?B?...?=`) decoded: S3 metadata is ASCII, so
    that is how a name with other letters travels."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value
