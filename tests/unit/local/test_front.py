"""The local HTTP front does for the template's routes what API Gateway does for the deployed stack.

The front is the emulator's (`diskport_emulator`); its pages and error bodies here are local mode's own
(`diskport_local.api_page`), as `diskport serve` wires them.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from diskport.settings import get_settings
from diskport.stores import aws

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import MAX_REQUEST_BYTES, ApiFront, FrontRequest, FrontServer
from diskport_local.api_page import ims_error_response, local_pages

CREATE_ROUTE = "/v1/cloudimages/dataimages/action"


class RecordingFunctions:
    """Stands in for the in-process functions: records each event and answers a fixed proxy result."""

    def __init__(self, result: Any = None, failed: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._result = result if result is not None else {"statusCode": 200, "body": "{}"}
        self._failed = failed

    def invoke(self, function: str, event: dict[str, Any]) -> tuple[str, bool]:
        self.calls.append((function, event))
        return json.dumps(self._result), self._failed


def front_with(functions: RecordingFunctions) -> ApiFront:
    return local_front(LocalStack().api_routes(), functions.invoke, lambda: {"openapi": "3.1.0"})


def local_front(routes: Any, invoke: Any, document: Any = dict) -> ApiFront:
    """The front as local mode serves it: its pages first, IMS error bodies for what no function answers."""
    return ApiFront(routes, invoke, pages=local_pages(document), error_response=ims_error_response)


def test_every_route_in_the_template_reaches_its_function() -> None:
    # Given a front over the template's routes
    functions = RecordingFunctions()
    front = front_with(functions)
    # When each route is called
    for route in LocalStack().api_routes():
        path = route.path.replace("{project_id}", "p1").replace("{job_id}", "j1")
        front.answer(FrontRequest(route.method, path, {}))
    # Then each reached the function the template names for it
    assert [function for function, _ in functions.calls] == [route.function for route in LocalStack().api_routes()]


def test_a_request_becomes_the_http_api_proxy_event_api_gateway_would_send() -> None:
    # Given
    functions = RecordingFunctions()
    front = front_with(functions)
    # When a job is asked for with an escaped path parameter, repeated query parameters and headers
    front.answer(
        FrontRequest("GET", "/v1/my%20project/jobs/abc?x=1&x=2&y=", {"X-Trace": "t1", "Content-Type": "text/plain"})
    )
    # Then the event is a payload 2.0 event for the show-job route
    ((function, event),) = functions.calls
    assert function == "GetJobFunction"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/{project_id}/jobs/{job_id}"
    # (an HTTP API hands functions the path percent-decoded, rawPath included: the AK/SK verifier relies on it)
    assert event["rawPath"] == "/v1/my project/jobs/abc"
    assert event["pathParameters"] == {"project_id": "my project", "job_id": "abc"}
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["headers"]["x-trace"] == "t1"
    assert event["requestContext"]["http"]["method"] == "GET"
    # and local mode signs nobody in: the functions run with PROJECT_ID_SOURCE=local
    assert "authorizer" not in event["requestContext"]


def test_the_function_answer_becomes_the_http_response() -> None:
    # Given a function answering a proxy result
    result = {"statusCode": 201, "headers": {"X-Answer": "yes"}, "body": '{"job_id": "j"}', "isBase64Encoded": False}
    front = front_with(RecordingFunctions(result))
    # When
    response = front.answer(FrontRequest("POST", CREATE_ROUTE, {}, b"{}"))
    # Then
    assert response.status == 201
    assert response.headers["x-answer"] == "yes"
    assert response.json() == {"job_id": "j"}


def test_a_binary_body_travels_base64_encoded_both_ways() -> None:
    # Given a function answering base64
    result = {"statusCode": 200, "body": "AAEC", "isBase64Encoded": True, "headers": {"content-type": "x/y"}}
    functions = RecordingFunctions(result)
    # When a body that is not UTF-8 is sent
    response = front_with(functions).answer(FrontRequest("POST", CREATE_ROUTE, {}, b"\xff\xfe"))
    # Then the function sees it base64-encoded, and its own base64 answer arrives decoded
    assert functions.calls[0][1]["isBase64Encoded"] is True
    assert functions.calls[0][1]["body"] == "//4="
    assert response.body == b"\x00\x01\x02"


def test_an_unknown_route_is_404_with_an_ims_error_body() -> None:
    functions = RecordingFunctions()
    # When
    response = front_with(functions).answer(FrontRequest("DELETE", "/v2/cloudimages", {}))
    # Then
    assert response.status == 404
    assert response.json()["error"]["code"] == "IMG.0404"
    assert "DELETE /v2/cloudimages" in response.json()["error"]["message"]
    assert functions.calls == []


def test_a_failing_function_is_a_500_with_an_ims_error_body() -> None:
    # Given a function that raises (the Lambda runtime's error payload, flagged as a function error)
    front = front_with(RecordingFunctions({"errorMessage": "boom", "errorType": "RuntimeError"}, failed=True))
    # When
    response = front.answer(FrontRequest("GET", "/v2/cloudimages", {}))
    # Then
    assert response.status == 500
    assert response.json()["error"]["code"] == "IMG.0061"


def test_a_body_over_api_gateways_10_mb_limit_is_refused_before_any_function_runs() -> None:
    functions = RecordingFunctions()
    response = front_with(functions).answer(FrontRequest("POST", CREATE_ROUTE, {}, b"x" * (MAX_REQUEST_BYTES + 1)))
    assert response.status == 413
    assert response.json()["error"]["code"] == "IMG.0001"
    assert functions.calls == []


def test_the_openapi_document_is_served_at_openapi_json() -> None:
    response = front_with(RecordingFunctions()).answer(FrontRequest("GET", "/openapi.json", {}))
    assert response.status == 200
    assert response.json() == {"openapi": "3.1.0"}


@pytest.fixture
def local_project(stack: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The provisioned stack with its functions configured as local mode configures them."""
    monkeypatch.setenv("PROJECT_ID_SOURCE", "local")
    monkeypatch.setenv("LOCAL_PROJECT_ID", "feedfacefeedfacefeedfacefeedface")
    get_settings.cache_clear()
    aws.forget_clients()
    return "feedfacefeedfacefeedfacefeedface"


def test_through_the_real_functions_a_created_job_can_be_read_back_as_the_local_project(
    stack: Any, local_project: str
) -> None:
    # Given the front over the real in-process functions
    front = local_front(stack.local.api_routes(), stack.lambdas.invoke)
    request = {"name": "data-disk", "image_url": "some-bucket:disk.qcow2", "min_disk": 40}
    # When a job is created with no credentials at all
    created = front.answer(
        FrontRequest("POST", CREATE_ROUTE, {"Content-Type": "application/json"}, json.dumps(request).encode())
    )
    # Then it belongs to the local project, and reads back by the IMS job route
    assert created.status == 200, created.body
    job_id = created.json()["job_id"]
    job = front.answer(FrontRequest("GET", f"/v1/{local_project}/jobs/{job_id}", {}))
    assert job.status == 200
    assert job.json()["job_id"] == job_id
    assert job.json()["status"] in ("INIT", "RUNNING")


def test_through_the_real_functions_an_invalid_request_gets_its_ims_code(stack: Any, local_project: str) -> None:
    front = local_front(stack.local.api_routes(), stack.lambdas.invoke)
    request = {"name": "data-disk", "image_url": "some-bucket:disk.qcow2", "min_disk": 39}
    answer = front.answer(
        FrontRequest("POST", CREATE_ROUTE, {"content-type": "application/json"}, json.dumps(request).encode())
    )
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "IMG.0055"


def test_through_the_real_functions_a_body_that_is_not_utf8_is_an_invalid_request(
    stack: Any, local_project: str
) -> None:
    front = local_front(stack.local.api_routes(), stack.lambdas.invoke)
    answer = front.answer(FrontRequest("POST", CREATE_ROUTE, {"content-type": "application/json"}, b"qs\x0e\xde"))
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "IMG.0001"


def test_over_http_any_method_without_a_route_even_trace_is_an_ims_404() -> None:
    server = FrontServer(front_with(RecordingFunctions()), "127.0.0.1", 0)
    server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{server.url}/v2/cloudimages", method="TRACE"), timeout=10)
    finally:
        server.stop()
    assert refused.value.code == 404
    assert json.loads(refused.value.read())["error"]["code"] == "IMG.0404"


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/xml"])
def test_through_the_real_functions_a_body_that_is_not_json_is_unsupported_media(
    stack: Any, local_project: str, content_type: str
) -> None:
    front = local_front(stack.local.api_routes(), stack.lambdas.invoke)
    answer = front.answer(FrontRequest("POST", CREATE_ROUTE, {"content-type": content_type}, b'{"name": "x"}'))
    assert answer.status == 415
    assert answer.json()["error"]["code"] == "IMG.0001"


def test_over_http_a_chunked_body_reaches_the_function_whole() -> None:
    functions = RecordingFunctions()
    server = FrontServer(front_with(functions), "127.0.0.1", 0)
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", CREATE_ROUTE, body=iter([b'{"name": ', b'"chunked"}']), encode_chunked=True)
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.stop()
    assert functions.calls[0][1]["body"] == '{"name": "chunked"}'


def test_over_http_a_body_announced_over_10_mb_is_refused_before_it_is_sent() -> None:
    functions = RecordingFunctions()
    server = FrontServer(front_with(functions), "127.0.0.1", 0)
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(f"POST {CREATE_ROUTE} HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n".encode())
            answer = client.makefile("rb").read()
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in answer.lower()
    assert functions.calls == []
