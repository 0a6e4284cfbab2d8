"""`diskport access-key`: what it asks of the service and what it prints, against a local front."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import ApiFront, FrontServer
from diskport_local.api_page import ims_error_response
from diskport_local.cli import main

CREATED = {
    "access_key": "HST3W2L0H5XK9QZ1R7AB",
    "secret_key": "s" * 40,
    "project_id": "p1",
    "created_at": "2026-01-01T00:00:00.000Z",
}


class KeyFunctions:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, function: str, event: dict[str, Any]) -> tuple[str, bool]:
        self.events.append(event)
        method = event["requestContext"]["http"]["method"]
        if method == "POST":
            return json.dumps({"statusCode": 201, "body": json.dumps(CREATED)}), False
        view = {k: v for k, v in CREATED.items() if k != "secret_key"} | {"status": "active", "last_used_at": None}
        if method == "GET":
            return json.dumps({"statusCode": 200, "body": json.dumps({"access_keys": [view]})}), False
        revoked = view | {"status": "revoked", "revoked_at": "2026-01-02T00:00:00.000Z"}
        return json.dumps({"statusCode": 200, "body": json.dumps(revoked)}), False


def serving(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FrontServer, KeyFunctions]]:
    functions = KeyFunctions()
    server = FrontServer(
        ApiFront(stack.api_routes(), functions.invoke, error_response=ims_error_response), "127.0.0.1", 0
    )
    server.start()
    monkeypatch.setenv("LOCAL_API_PORT", server.url.rpartition(":")[2])
    for name in ("DISKPORT_ENDPOINT", "DISKPORT_ACCESS_KEY", "DISKPORT_SECRET_KEY", "DISKPORT_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield server, functions
    server.stop()


@pytest.fixture
def verifying_front(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyFunctions]:
    for _, functions in serving(LocalStack(parameters={"Authentication": "AccessKey"}), monkeypatch):
        yield functions


@pytest.fixture
def open_front(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyFunctions]:
    for _, functions in serving(LocalStack(), monkeypatch):
        yield functions


def test_create_with_json_prints_exactly_the_pair_and_the_project(
    verifying_front: KeyFunctions, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["access-key", "create", "--project", "p1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"access_key": CREATED["access_key"], "secret_key": CREATED["secret_key"], "project_id": "p1"}
    (event,) = verifying_front.events
    assert event["rawPath"] == "/diskport/access-keys"
    assert json.loads(event["body"]) == {"project_id": "p1"}
    # the operator's call is never signed with an access key
    assert "authorization" not in event["headers"]


def test_list_prints_a_table_without_secrets_and_revoke_names_the_key(
    verifying_front: KeyFunctions, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["access-key", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ACCESS", "KEY", "PROJECT", "STATUS", "CREATED", "LAST", "USED"]
    assert row.split() == [CREATED["access_key"], "p1", "active", CREATED["created_at"], "-"]
    assert main(["access-key", "revoke", CREATED["access_key"]]) == 0
    assert capsys.readouterr().out.startswith(f"revoked {CREATED['access_key']} (project p1)")
    assert verifying_front.events[-1]["rawPath"] == f"/diskport/access-keys/{CREATED['access_key']}"


def test_against_a_stack_without_access_keys_the_command_says_how_to_get_them(
    open_front: KeyFunctions, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["access-key", "list"]) == 1
    assert "LOCAL_AUTH=aksk" in capsys.readouterr().err
    assert open_front.events == []
