"""What an AWS error means to diskport: the one place that reads botocore's error codes and statuses.

Every store asks here whether an answer was passing trouble (throttling, a fault of the service, a dropped
connection: retry), the object or item being gone, the caller being denied, or a condition that did not hold.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from diskport.errors import DiskportError, ThrottlingError, TransientServiceError

__all__ = [
    "ClientError",
    "cancelled_by_condition",
    "error_code",
    "http_status",
    "is_condition_failed",
    "is_denied",
    "is_gone",
    "is_throttling",
    "is_transient",
    "passing_trouble",
]

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
# A service failing for a moment, whatever its HTTP status: S3's RequestTimeout is a 400.
SERVICE_FAULT_CODES = frozenset(
    {"InternalError", "InternalServerError", "InternalServerException", "ServiceUnavailable", "RequestTimeout"}
)
# A missing object, version or key (HEAD answers the bare status as the code). S3 answers 405 for a delete marker.
GONE_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound", "405", "MethodNotAllowed"})
DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})


def error_code(error: BaseException) -> str:
    """The `Error.Code` of an AWS answer; "" for anything that is not one."""
    if not isinstance(error, ClientError):
        return ""
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: BaseException) -> int:
    if not isinstance(error, ClientError):
        return 0
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_throttling(error: BaseException) -> bool:
    return error_code(error) in THROTTLING_CODES or http_status(error) == 429


def is_transient(error: BaseException) -> bool:
    """Passing trouble, worth the same call again later: throttling, a service fault, a connection that failed
    or closed, a read that timed out."""
    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    return is_throttling(error) or error_code(error) in SERVICE_FAULT_CODES or http_status(error) >= 500


def is_gone(error: BaseException) -> bool:
    return error_code(error) in GONE_CODES or http_status(error) in (404, 405)


def is_denied(error: BaseException) -> bool:
    return error_code(error) in DENIED_CODES or http_status(error) == 403


def is_precondition_failed(error: BaseException) -> bool:
    """An `If-Match` that no longer matches: the object was replaced."""
    return error_code(error) in ("PreconditionFailed", "412") or http_status(error) == 412


def is_condition_failed(error: BaseException) -> bool:
    """A DynamoDB write whose ConditionExpression did not hold."""
    return error_code(error) == "ConditionalCheckFailedException"


def cancelled_by_condition(error: BaseException, item_index: int) -> bool:
    """Whether a cancelled DynamoDB transaction failed on the condition of its `item_index`-th item."""
    if error_code(error) != "TransactionCanceledException":
        return False
    reasons: list[dict[str, Any]] = getattr(error, "response", {}).get("CancellationReasons") or []
    return len(reasons) > item_index and reasons[item_index].get("Code") == "ConditionalCheckFailed"


def passing_trouble(error: BaseException) -> DiskportError | None:
    """The retryable error a step raises for passing trouble, or None when the error is not passing trouble."""
    if isinstance(error, ConnectionError | HTTPClientError):
        return TransientServiceError(f"A connection to an AWS service failed: {type(error).__name__}")
    if not isinstance(error, ClientError):
        return None
    answered = f"{error.operation_name} answered {error_code(error) or http_status(error)}"
    if is_throttling(error):
        return ThrottlingError(f"An AWS service throttled the import: {answered}")
    if is_transient(error):
        return TransientServiceError(f"An AWS service failed for a moment: {answered}")
    return None
