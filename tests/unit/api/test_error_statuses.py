"""Each IMG code answers the HTTP status IMS's error-code table gives it (ims-api.md §4): 400, whatever the code."""

from __future__ import annotations

import json

import pytest
from diskport import errors
from diskport.api.callers import UnauthenticatedError
from diskport.api.resolver import error_response
from diskport.errors import IMS_MESSAGES, DiskportError

# Not in IMS's table: an id the caller cannot see (IMS's "Returned Values" list 404), and an unsigned request.
OUTSIDE_THE_TABLE = {"IMG.0404": 404}


def every_error_type() -> list[type[DiskportError]]:
    found, pending = [], [DiskportError]
    while pending:
        error_type = pending.pop()
        found.append(error_type)
        pending.extend(error_type.__subclasses__())
    return found


@pytest.mark.parametrize("code", sorted(set(IMS_MESSAGES) - set(OUTSIDE_THE_TABLE)))
def test_every_img_code_of_imss_table_answers_400(code: str) -> None:
    response = error_response(DiskportError(code=code))
    assert response.status_code == 400
    assert json.loads(str(response.body))["error"]["code"] == code


@pytest.mark.parametrize(
    "error_type",
    [error_type for error_type in every_error_type() if error_type.__module__ == errors.__name__],
    ids=lambda error_type: error_type.__name__,
)
def test_every_error_of_the_service_answers_its_codes_status(error_type: type[DiskportError]) -> None:
    error = (
        error_type(code=error_type.code) if error_type is not errors.RequestRejectedError else error_type("IMG.0001")
    )
    assert error.http_status == OUTSIDE_THE_TABLE.get(error.code, 400), error_type.__name__


def test_flow_control_and_unknown_system_errors_are_400_as_in_imss_table() -> None:
    assert errors.FlowControlError().http_status == 400
    assert errors.ServiceUnavailableError().http_status == 400
    assert errors.ImageBusyError().code == "IMG.0090"


def test_an_unsigned_request_is_401() -> None:
    assert UnauthenticatedError().http_status == 401
