"""What an AWS answer means to the service, decided in one place (stores/aws_errors.py) for every store."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.stub import Stubber
from diskport.errors import ThrottlingError, TransientServiceError
from diskport.stores import aws_errors
from diskport.stores.snapshots import SnapshotKeptError, SnapshotStore


def answered(code: str, status: int = 400, operation: str = "GetObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("ThrottlingException", 400),
        ("RequestThrottledException", 400),
        ("ConcurrentLimitExceededException", 400),
        ("TooManyRequestsException", 429),
        ("", 429),
    ],
)
def test_throttling_answers_are_passing_trouble_retried_as_throttling(code: str, status: int) -> None:
    error = answered(code, status)
    assert aws_errors.is_throttling(error)
    assert aws_errors.is_transient(error)
    assert isinstance(aws_errors.passing_trouble(error), ThrottlingError)


@pytest.mark.parametrize(
    ("code", "status"),
    [("InternalError", 500), ("InternalServerException", 500), ("ServiceUnavailable", 503), ("RequestTimeout", 400)],
)
def test_a_service_failing_for_a_moment_is_passing_trouble(code: str, status: int) -> None:
    error = answered(code, status)
    assert aws_errors.is_transient(error)
    trouble = aws_errors.passing_trouble(error)
    assert isinstance(trouble, TransientServiceError)
    assert f"GetObject answered {code}" in str(trouble)


def test_a_dropped_connection_is_passing_trouble() -> None:
    for error in (ConnectionClosedError(endpoint_url="http://127.0.0.1"), ReadTimeoutError(endpoint_url="x")):
        assert aws_errors.is_transient(error)
        assert isinstance(aws_errors.passing_trouble(error), TransientServiceError)


@pytest.mark.parametrize(
    "code", ["AccessDenied", "NoSuchKey", "ValidationException", "ConditionalCheckFailedException"]
)
def test_refusals_a_retry_would_not_change_are_not_passing_trouble(code: str) -> None:
    error = answered(code, 400)
    assert not aws_errors.is_transient(error)
    assert aws_errors.passing_trouble(error) is None


def test_gone_denied_and_replaced_objects_are_told_apart_by_code_or_status() -> None:
    assert aws_errors.is_gone(answered("NoSuchKey", 404)) and aws_errors.is_gone(answered("404", 404))
    assert aws_errors.is_gone(answered("MethodNotAllowed", 405))  # a version that became a delete marker
    assert aws_errors.is_denied(answered("AccessDenied", 403)) and aws_errors.is_denied(answered("403", 403))
    assert aws_errors.is_precondition_failed(answered("PreconditionFailed", 412))
    assert not aws_errors.is_gone(answered("AccessDenied", 403))
    assert not aws_errors.is_denied(answered("NoSuchKey", 404))


def test_a_cancelled_transaction_names_the_item_whose_condition_failed() -> None:
    error = ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "..."},
            "CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed"}],
        },
        "TransactWriteItems",
    )
    assert not aws_errors.cancelled_by_condition(error, 0)
    assert aws_errors.cancelled_by_condition(error, 1)
    assert not aws_errors.cancelled_by_condition(answered("ConditionalCheckFailedException"), 0)


def _ec2_answering(code: str, status: int) -> tuple[Any, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    stubber = Stubber(ec2)
    stubber.add_client_error("delete_snapshot", service_error_code=code, http_status_code=status)
    stubber.activate()
    return ec2, stubber


def test_a_snapshot_ebs_will_not_delete_is_kept_with_ebs_reason() -> None:
    ec2, _ = _ec2_answering("InvalidSnapshot.InUse", 400)
    with pytest.raises(SnapshotKeptError) as kept:
        SnapshotStore(ebs_client=object(), ec2_client=ec2).delete("snap-0123456789abcdef0")
    assert kept.value.code == "InvalidSnapshot.InUse"


def test_a_snapshot_already_gone_is_deleted_and_passing_trouble_is_raised_to_retry() -> None:
    ec2, _ = _ec2_answering("InvalidSnapshot.NotFound", 400)
    SnapshotStore(ebs_client=object(), ec2_client=ec2).delete("snap-0123456789abcdef0")
    ec2, _ = _ec2_answering("RequestLimitExceeded", 503)
    with pytest.raises(ClientError) as raised:
        SnapshotStore(ebs_client=object(), ec2_client=ec2).delete("snap-0123456789abcdef0")
    assert isinstance(aws_errors.passing_trouble(raised.value), ThrottlingError)
