"""How a step's error crosses the state machine to MarkFailed with its IMS code and reason intact.

A handler's exception reaches the state machine in the Lambda runtime's shape: the Catch puts
`{"Error": "<errorType>", "Cause": "{\\"errorMessage\\": ..., \\"errorType\\": ...}"}` into `$.error`.
`errorType` is the exception's class name, which the ASL's Retry matches (SnapshotNotReadyError,
ThrottlingError, ...); `errorMessage` is `str(exception)`, which `reported_for_the_state_machine` makes
`"IMG.0057: <reason>"` so that `decoded_failure` can read the code and the reason back. Anything else — an
unexpected exception, a Lambda or States error — becomes IMG.1075 with a short reason and never a stack trace.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from diskport.errors import (
    DiskportError,
    SourceError,
    ThrottlingError,
    TransientServiceError,
)

UNEXPECTED_CODE = "IMG.1075"
_ENCODED = re.compile(r"^(IMG\.\d{4}): (.*)$", re.DOTALL)
# Error codes AWS services answer when a caller goes faster than its quota allows. EBS answers its own two with
# HTTP 400 (EBS API reference, Errors): RequestThrottledException when the snapshot's or the account's request rate
# is exceeded (the account's PutSnapshotBlock quota is shared by every import running in it), and
# ConcurrentLimitExceededException for too many requests at once; both pass, neither is the image's fault.
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "503",
        "RequestThrottledException",
        "ConcurrentLimitExceededException",
    }
)
_TRANSIENT_CODES = frozenset({"InternalError", "InternalServerError", "InternalServerException", "ServiceUnavailable"})
# Step Functions' own error names, told the way a person understands them.
_STATES_REASONS = {
    "States.Timeout": "the step took longer than allowed",
    "States.TaskFailed": "a step failed",
    "States.ExceedToleratedFailureThreshold": "converting a chunk of the disk failed",
    "States.Permissions": "the service lacks a permission it needs",
    "Sandbox.Timedout": "the step ran out of time",
}
REASON_MAX_LENGTH = 512


@dataclass(frozen=True)
class StepFailure:
    """Why an import failed, as the job reports it."""

    code: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def encoded(error: DiskportError) -> str:
    return f"{error.code}: {error.reason}"


def as_step_error(error: Exception) -> Exception:
    """The exception a step should let escape: DiskportErrors as they are, passing AWS trouble as a retryable type.

    A failed read of the source arrives as a SourceError (IMG.0057); when its cause was throttling or a 5xx, it is
    retried like any other passing trouble rather than blamed on the file.
    """
    if isinstance(error, SourceError) and isinstance(error.__cause__, ClientError):
        retryable = _retryable(error.__cause__)
        return retryable if retryable is not None else error
    if isinstance(error, DiskportError):
        return error
    retryable = _retryable(error)
    return retryable if retryable is not None else error


def _retryable(error: Exception) -> Exception | None:
    if isinstance(error, ClientError):
        if _error_code(error) in THROTTLING_CODES:
            return ThrottlingError(f"An AWS service throttled the import: {_short(error)}")
        if _error_code(error) in _TRANSIENT_CODES or _http_status(error) >= 500:
            return TransientServiceError(f"An AWS service failed for a moment: {_short(error)}")
    if isinstance(error, ConnectionError | ReadTimeoutError):
        return TransientServiceError(f"A connection to an AWS service failed: {type(error).__name__}")
    return None


def reported_for_the_state_machine[**P, R](handler: Callable[P, R]) -> Callable[P, R]:
    """Make a step handler's DiskportErrors carry `IMG.xxxx: reason` as their message, whatever their type."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            escaping = as_step_error(error)
            if isinstance(escaping, DiskportError):
                escaping.args = (encoded(escaping),)
            if escaping is error:
                raise
            raise escaping from error

    return wrapper


def decoded_failure(error: Any) -> StepFailure | None:
    """The code and reason a step encoded in the error a Catch (or an execution event) carries, if any."""
    message = _error_message(error.get("Cause") if isinstance(error, dict) else error)
    match = _ENCODED.match(message) if message is not None else None
    return StepFailure(match.group(1), _clip(match.group(2))) if match else None


def error_name(error: Any) -> str:
    """The `Error` of a Catch's `$.error`: the exception type, or a Lambda / States error name."""
    return str(error.get("Error") or "") if isinstance(error, dict) else ""


def unexpected_failure(error_name: str, step: str | None = None) -> StepFailure:
    what = _STATES_REASONS.get(error_name, "an unexpected error occurred")
    where = f" while {step}" if step else ""
    label = f" ({error_name})" if error_name and not error_name.startswith("States.") else ""
    return StepFailure(
        UNEXPECTED_CODE,
        f"The import failed{where}: {what}{label}. Start a new import; if it fails again, report the job id.",
    )


def _error_message(cause: Any) -> str | None:
    if isinstance(cause, dict):
        message = cause.get("errorMessage")
        return str(message) if message is not None else None
    if not isinstance(cause, str):
        return None
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict) and parsed.get("errorMessage") is not None:
        return str(parsed["errorMessage"])
    return None


def _http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _short(error: ClientError) -> str:
    return f"{error.operation_name} answered {_error_code(error)}"


def _clip(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX_LENGTH else reason[: REASON_MAX_LENGTH - 1] + "…"
