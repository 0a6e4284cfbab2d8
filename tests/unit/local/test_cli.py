"""The diskport CLI sends IMS requests, signed with SigV4 when it talks to a deployed stack."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import ApiFront, FrontServer
from diskport_local.cli import main
from diskport_local.client import region_of_endpoint

SIGNATURE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=testing/(?P<date>\d{8})/us-east-1/execute-api/aws4_request, "
    r"SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


class AnsweringFunctions:
    """Records each event the front builds, and answers like the IMS functions would."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, function: str, event: dict[str, Any]) -> tuple[str, bool]:
        self.events.append(event)
        if function == "CreateImageJobFunction":
            body: Any = {"job_id": "0" * 32}
        elif function == "ListImagesFunction":
            body = {"images": [{"id": "image-1", "status": "active"}]}
        else:
            body = {"job_id": "0" * 32, "status": "RUNNING", "entities": {"process_percent": 0.5}}
        return json.dumps({"statusCode": 200, "body": json.dumps(body)}), False


@pytest.fixture
def front() -> Iterator[tuple[str, AnsweringFunctions]]:
    functions = AnsweringFunctions()
    server = FrontServer(ApiFront(LocalStack().api_routes(), functions.invoke), "127.0.0.1", 0)
    server.start()
    yield server.url, functions
    server.stop()


def test_import_of_a_bucket_key_sends_the_ims_create_request(
    front: tuple[str, AnsweringFunctions], capsys: pytest.CaptureFixture[str]
) -> None:
    url, functions = front
    # When
    code = main(
        [
            "import",
            "images:disks/data-1.qcow2",
            "--name",
            "data-1",
            "--min-disk",
            "80",
            "--os-type",
            "Windows",
            "--description",
            "first data disk",
            "--tag",
            "team=storage",
            "--tag",
            "empty=",
            "--cmk-id",
            "alias/disks",
            "--endpoint",
            url,
            "--region",
            "us-east-1",
        ]
    )
    # Then the request is the IMS body, and the job id is printed
    assert code == 0
    (event,) = functions.events
    assert event["requestContext"]["http"]["path"] == "/v1/cloudimages/dataimages/action"
    assert json.loads(event["body"]) == {
        "name": "data-1",
        "image_url": "images:disks/data-1.qcow2",
        "min_disk": 80,
        "os_type": "Windows",
        "description": "first data disk",
        "cmk_id": "alias/disks",
        "image_tags": [{"key": "team", "value": "storage"}, {"key": "empty", "value": ""}],
    }
    assert json.loads(capsys.readouterr().out) == {"job_id": "0" * 32}


def test_requests_to_an_endpoint_carry_a_valid_sigv4_signature_for_execute_api(
    front: tuple[str, AnsweringFunctions],
) -> None:
    url, functions = front
    # When images are listed against an endpoint, with the usual AWS credentials
    assert main(["images", "--id", "image-1", "--endpoint", url, "--region", "us-east-1"]) == 0
    # Then the request is signed for execute-api in the region, over the host and date at least
    headers = functions.events[0]["headers"]
    found = SIGNATURE.fullmatch(headers["authorization"])
    assert found is not None, headers["authorization"]
    assert {"host", "x-amz-date"} <= set(found["headers"].split(";"))
    assert found["date"] == headers["x-amz-date"][:8] == datetime.now(UTC).strftime("%Y%m%d")
    # and the signature is the one API Gateway computes from the request it received
    request = AWSRequest(
        method="GET",
        url=f"{url}/v2/cloudimages?id=image-1",
        headers={name: headers[name] for name in found["headers"].split(";")},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1")
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert found["signature"] == expected


def test_local_mode_requests_are_not_signed(
    front: tuple[str, AnsweringFunctions], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, functions = front
    monkeypatch.setenv("LOCAL_API_PORT", url.rpartition(":")[2])
    assert main(["job", "0" * 32]) == 0
    assert "authorization" not in functions.events[0]["headers"]
    assert functions.events[0]["requestContext"]["http"]["path"] == f"/v1/cloudimages/job/{'0' * 32}"


def test_the_region_comes_from_an_api_gateway_endpoint() -> None:
    assert region_of_endpoint("https://a1b2c3.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"
    assert region_of_endpoint("http://127.0.0.1:3000") is None


def test_a_source_that_is_neither_a_file_nor_bucket_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["import", str(tmp_path / "missing.qcow2"), "--name", "x", "--min-disk", "40"])
    assert code == 1
    assert "neither a file nor bucket:key" in capsys.readouterr().err


def test_nothing_listening_is_explained(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LOCAL_API_PORT", str(port))
    assert main(["images"]) == 1
    assert "make run" in capsys.readouterr().err


def test_an_api_refusal_shows_its_ims_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refusing(function: str, event: dict[str, Any]) -> tuple[str, bool]:
        body = {"error": {"code": "IMG.0055", "message": "min_disk must be a whole number of GB from 40 to 2048."}}
        return json.dumps({"statusCode": 400, "body": json.dumps(body)}), False

    server = FrontServer(ApiFront(LocalStack().api_routes(), refusing), "127.0.0.1", 0)
    server.start()
    try:
        monkeypatch.setenv("LOCAL_API_PORT", server.url.rpartition(":")[2])
        assert main(["import", "bucket:disk.qcow2", "--name", "x", "--min-disk", "39"]) == 1
    finally:
        server.stop()
    assert "IMG.0055: min_disk must be" in capsys.readouterr().err


def test_images_are_listed_across_every_page(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    queries: list[str] = []

    def paging(function: str, event: dict[str, Any]) -> tuple[str, bool]:
        queries.append(event["rawQueryString"])
        marker = (event.get("queryStringParameters") or {}).get("marker")
        body: dict[str, Any] = {"images": [{"id": marker or "first"}]}
        if marker is None:
            body["next"] = "/v2/cloudimages?limit=1&marker=second"
        return json.dumps({"statusCode": 200, "body": json.dumps(body)}), False

    server = FrontServer(ApiFront(LocalStack().api_routes(), paging), "127.0.0.1", 0)
    server.start()
    try:
        monkeypatch.setenv("LOCAL_API_PORT", server.url.rpartition(":")[2])
        assert main(["images"]) == 0
    finally:
        server.stop()
    assert [image["id"] for image in json.loads(capsys.readouterr().out)] == ["first", "second"]
    assert queries == ["", "limit=1&marker=second"]
