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
from typing import Any

from diskport.errors import DiskportError, SourceError, StepFailure
from diskport.stores.aws_errors import passing_trouble

UNEXPECTED_CODE = "IMG.1075"
_ENCODED = re.compile(r"^(IMG\.\d{4}): (.*)$", re.DOTALL)
# Step Functions' own error names, told the way a person understands them.
_STATES_REASONS = {
    "States.Timeout": "the step took longer than allowed",
    "States.TaskFailed": "a step failed",
    "States.ExceedToleratedFailureThreshold": "converting a chunk of the disk failed",
    "States.Permissions": "the service lacks a permission it needs",
    "Sandbox.Timedout": "the step ran out of time",
}
REASON_MAX_LENGTH = 512


def encoded(error: DiskportError) -> str:
    return f"{error.code}: {error.reason}"


def as_step_error(error: Exception) -> Exception:
    """The exception a step should let escape: DiskportErrors as they are, passing AWS trouble as a retryable type.

    A failed read of the source arrives as a SourceError (IMG.0057); when its cause was throttling or a 5xx, it is
    retried like any other passing trouble rather than blamed on the file.
    """
    if isinstance(error, SourceError) and error.__cause__ is not None:
        retryable = passing_trouble(error.__cause__)
        return retryable if retryable is not None else error
    if isinstance(error, DiskportError):
        return error
    retryable = passing_trouble(error)
    return retryable if retryable is not None else error


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


def _clip(reason: str) -> str:
    return reason if len(reason) <= REASON_MAX_LENGTH else reason[: REASON_MAX_LENGTH - 1] + "…"
