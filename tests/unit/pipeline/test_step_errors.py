"""How a step's error reaches MarkFailed: its IMS code and reason intact, anything unplanned as IMG.1075."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from diskport.errors import DiskSizeError, SourceError, ThrottlingError, TransientServiceError
from diskport.pipeline.step_errors import (
    as_step_error,
    decoded_failure,
    error_name,
    reported_for_the_state_machine,
    unexpected_failure,
)


def lambda_runtime_error(error: Exception) -> dict[str, str]:
    """What a Catch puts in `$.error` when a handler raised `error`."""
    cause = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": ['  File "app.py"']}
    return {"Error": type(error).__name__, "Cause": json.dumps(cause)}


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def raised_by(handler: Any) -> Exception:
    with pytest.raises(Exception) as raised:
        handler({}, None)
    return raised.value


def test_a_deliberate_error_crosses_the_state_machine_with_its_code_reason_and_type() -> None:
    # Given a step that refuses the disk size
    @reported_for_the_state_machine
    def step(event: Any, context: Any) -> None:
        raise DiskSizeError("The virtual disk is 44040192000 bytes but min_disk is 40 GB.")

    error = raised_by(step)
    # Then its type still names it for Retry, and MarkFailed reads back the code and the reason
    assert type(error).__name__ == "DiskSizeError"
    failure = decoded_failure(lambda_runtime_error(error))
    assert failure is not None
    assert (failure.code, failure.reason) == (
        "IMG.0055",
        "The virtual disk is 44040192000 bytes but min_disk is 40 GB.",
    )


@pytest.mark.parametrize(
    ("raised", "retried_as"),
    [
        (client_error("ThrottlingException", 400), ThrottlingError),
        (client_error("SlowDown", 503), ThrottlingError),
        (client_error("InternalServerException", 500), TransientServiceError),
    ],
)
def test_aws_trouble_becomes_an_error_type_the_state_machine_retries(raised: Exception, retried_as: type) -> None:
    @reported_for_the_state_machine
    def step(event: Any, context: Any) -> None:
        raise raised

    assert isinstance(raised_by(step), retried_as)


@pytest.mark.parametrize(
    ("cause", "retried_as"),
    [(client_error("SlowDown", 503), ThrottlingError), (client_error("InternalError", 500), TransientServiceError)],
)
def test_a_source_read_failing_for_s3s_own_reasons_is_retried_rather_than_blamed_on_the_file(
    cause: ClientError, retried_as: type
) -> None:
    error = SourceError("Reading the image file failed: start the import again.")
    error.__cause__ = cause
    assert isinstance(as_step_error(error), retried_as)


def test_a_source_read_refused_for_the_files_reasons_stays_img_0057() -> None:
    error = SourceError("The image file changed during import.")
    error.__cause__ = client_error("PreconditionFailed", 412)
    assert as_step_error(error) is error


def test_an_unplanned_error_becomes_img_1075_naming_the_step_and_never_its_message() -> None:
    error = lambda_runtime_error(KeyError("/var/task/internal secret"))
    assert decoded_failure(error) is None
    failure = unexpected_failure(error_name(error), "registering the image")
    assert failure.code == "IMG.1075"
    assert "registering the image" in failure.reason and "KeyError" in failure.reason
    assert "secret" not in failure.reason


def test_step_functions_own_errors_are_told_in_words() -> None:
    failure = unexpected_failure("States.Timeout", "converting the virtual disk into snapshot blocks")
    assert "took longer than allowed" in failure.reason and "States." not in failure.reason
