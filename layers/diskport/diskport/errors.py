"""The one error hierarchy of diskport, and the one place that maps it to IMS codes.

Every error the service raises on purpose is a `DiskportError` carrying an IMS code (`IMG.xxxx`), the
HTTP status an API caller sees, and a `reason` a person can act on. A job that fails stores `code` as
its `error_code` and `reason` as its `fail_reason`.

The disk image engine raises its own errors (`diskport.engine.errors`), knowing nothing of IMS: `ims_error_of`
maps them, and every call of the engine runs inside `engine_errors_as_ims()`.

The HTTP status is the one IMS's error-code table (`error_codes.rst`) gives: 400 for every IMG code it lists,
flow control and IMG.0061 included (403 for IMG.0026 alone). Only what the table does not cover differs: a job or
image the caller cannot see (IMG.0404, 404, as IMS's "Returned Values" list it) and an unsigned request (401).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diskport.engine.errors import DiskError

IMS_MESSAGES: dict[str, str] = {
    "IMG.0001": "The request message format is invalid.",
    "IMG.0002": "The image name contains more than 128 characters.",
    "IMG.0003": "The image name format is invalid.",
    "IMG.0004": "The description contains more than 1024 characters.",
    "IMG.0007": "The request body is empty.",
    "IMG.0013": "The image name is not specified.",
    "IMG.0015": "The number of private images has reached the maximum allowed.",
    "IMG.0017": "The URL format is incorrect.",
    "IMG.0046": "The image is unavailable.",
    "IMG.0054": "The image description format is invalid.",
    "IMG.0055": "The memory or disk size is invalid.",
    "IMG.0057": (
        "The image file is empty, not found, or in incorrect format, "
        "or you do not have enough permission to access the file."
    ),
    "IMG.0059": "The size of the image file exceeds the maximum allowed.",
    "IMG.0060": "The number of tasks exceeds the flow control limit.",
    "IMG.0061": "Unknown system error.",
    "IMG.0067": "The project ID is incorrect.",
    "IMG.0068": "The specified bucket name is empty.",
    "IMG.0069": "The specified bucket cannot be accessed.",
    "IMG.0072": "The specified image format is not supported.",
    "IMG.0090": "The image being created cannot be deleted.",
    "IMG.0095": "The KMS key does not exist.",
    "IMG.0097": "The key is not enabled.",
    "IMG.0099": "You do not have the permission to access the key.",
    "IMG.0109": "The bucket name contains invalid characters.",
    "IMG.0115": "The image tag is invalid.",
    "IMG.0116": "The number of image tags exceeds the quota.",
    "IMG.0121": "The object cannot be found.",
    "IMG.0122": "The OS type is invalid.",
    "IMG.0175": "The folder name and image file name cannot contain spaces.",
    "IMG.0194": "The maximum number of images that can be imported at one time has been reached.",
    "IMG.1075": "Failed to register the image file.",
    # Not in the IMS table: the service's answer for a job or image id the caller cannot see.
    "IMG.0404": "The requested resource was not found.",
}


class DiskportError(Exception):
    """Base of every deliberate error. `reason` is for people; `code` and `message` are IMS's."""

    code: str = "IMG.0061"
    http_status: int = 400

    def __init__(self, reason: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.reason = reason or IMS_MESSAGES[self.code]
        super().__init__(self.reason)

    @property
    def message(self) -> str:
        return IMS_MESSAGES[self.code]

    def with_status(self, http_status: int) -> DiskportError:
        """This error, answered with another HTTP status."""
        self.http_status = http_status
        return self

    def to_body(self) -> dict[str, dict[str, str]]:
        """The IMS error body: `{"error": {"code": ..., "message": ...}}`."""
        return {"error": {"code": self.code, "message": self.reason}}


class RequestRejectedError(DiskportError):
    """A request that breaks an API rule: 400, nothing written."""

    http_status = 400

    def __init__(self, code: str, reason: str | None = None) -> None:
        super().__init__(reason, code=code)


class NotFoundError(DiskportError):
    """A job or image that does not exist, or belongs to another project: 404, never a leak."""

    code = "IMG.0404"
    http_status = 404


class ImageQuotaError(DiskportError):
    """The project already has as many private images as it may."""

    code = "IMG.0015"


class FlowControlError(DiskportError):
    """Too many imports under way for the project."""

    code = "IMG.0194"


class ServiceUnavailableError(DiskportError):
    """A dependency failed while accepting a request; the caller may retry."""

    code = "IMG.0061"


class ImageBusyError(DiskportError):
    """An image still being imported (`queued` or `saving`) cannot be deleted."""

    code = "IMG.0090"


class ImageUnavailableError(DiskportError):
    """Only an `active` image can be updated."""

    code = "IMG.0046"


class ImportFailedError(DiskportError):
    """An import step failed for a reason the job reports (job FAIL, error_code = code)."""

    code = "IMG.1075"


class SourceError(ImportFailedError):
    """The source object is missing, unreadable, empty or in the wrong storage class."""

    code = "IMG.0057"


class ImageRejectedError(ImportFailedError):
    """The image file is broken or unsafe (inconsistent tables, backing files, size lies...)."""

    code = "IMG.0057"


class UnsupportedFormatError(ImageRejectedError):
    """The image is in a format, or sub-format, the service does not import."""

    code = "IMG.0072"


class DiskSizeError(ImportFailedError):
    """min_disk is smaller than the virtual disk inside the file."""

    code = "IMG.0055"


class EncryptionKeyError(ImportFailedError):
    """The KMS key named by cmk_id cannot be used (IMG.0095 / IMG.0097 / IMG.0099)."""

    code = "IMG.0095"


class RetryableStepError(DiskportError):
    """A pipeline step hit a passing condition; the state machine retries the step (its Retry names the type)."""

    code = "IMG.1075"


class SnapshotNotReadyError(RetryableStepError):
    """EBS does not accept blocks yet: for about two minutes after StartSnapshot it answers "does not exist"."""


class PlanNotReadyError(RetryableStepError):
    """A convert worker started beside Fetch ran short of time waiting for its plan; a new invocation waits on."""


class ThrottlingError(RetryableStepError):
    """S3 (SlowDown) or EBS throttled the step beyond what the client's own retries absorb."""


class TransientServiceError(RetryableStepError):
    """An AWS service failed in a way that a second attempt usually does not (5xx, dropped connection)."""


@dataclass(frozen=True)
class StepFailure:
    """Why an import failed, as the job reports it."""

    code: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def ims_error_of(error: DiskError) -> ImportFailedError:
    """The IMS error a job fails with when the engine refuses its image or cannot read the source file."""
    # Imported here, not at the top: the API's functions load this module but never the engine.
    from diskport.engine.errors import SourceReadError, UnsupportedImageError

    if isinstance(error, UnsupportedImageError):
        return UnsupportedFormatError(error.reason)
    if isinstance(error, SourceReadError):
        return SourceError(error.reason)
    return ImageRejectedError(error.reason)


@contextlib.contextmanager
def engine_errors_as_ims() -> Iterator[None]:
    """Around a call of the engine: what it raises as a DiskError escapes as the IMS error `ims_error_of` gives."""
    from diskport.engine.errors import DiskError

    try:
        yield
    except DiskError as error:
        # The S3 error behind a failed read stays the cause: the retry rules read it (pipeline/step_errors.py).
        raise ims_error_of(error) from error.__cause__ or error
