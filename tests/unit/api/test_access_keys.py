"""The access key store and the one check every route goes through, on the emulated table and KMS key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from diskport.api.resolver import current_project, make_resolver
from diskport.errors import RequestRejectedError
from diskport.settings import get_settings
from diskport.stores import aws
from diskport.stores.access_keys import AccessKeyStore, UnknownAccessKeyError, cached_key, forget_cached_key
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from diskport_emulator import Emulator, LocalStack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:huaweicloudsdkcore.signer.signer")

PROJECT = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[AccessKeyStore]:
    stack = LocalStack(parameters={"Authentication": "AccessKey"})
    with Emulator(stack, enforce_iam=False, run_executions=False):  # the store's own rules, called as the admin
        monkeypatch.setenv("ACCESS_KEYS_TABLE", stack.physical_name("AccessKeysTable"))
        monkeypatch.setenv("ACCESS_KEYS_KMS_KEY", "alias/diskport-access-keys")
        monkeypatch.setenv("PROJECT_ID_SOURCE", "access_key")
        get_settings.cache_clear()
        aws.forget_clients()
        forget_cached_key()
        yield AccessKeyStore()
        forget_cached_key()


def stored_items(store: AccessKeyStore) -> list[dict[str, Any]]:
    return list(boto3.resource("dynamodb").Table(get_settings().access_keys_table).scan()["Items"])


def test_a_created_secret_is_answered_once_and_stored_only_sealed(store: AccessKeyStore) -> None:
    created = store.create(PROJECT)
    assert len(created.access_key) == 20 and len(created.secret_key) == 40
    (item,) = stored_items(store)
    stored_bytes = b"".join(
        bytes(value.value) if hasattr(value, "value") else str(value).encode() for value in item.values()
    )
    assert created.secret_key.encode() not in stored_bytes
    assert "secret_key" not in item
    # and only the store, with kms:Decrypt, opens it again
    assert store.verifiable(created.access_key).secret_key == created.secret_key  # type: ignore[union-attr]
    listed = store.list()
    assert [(key.access_key, key.project_id, key.status) for key in listed] == [(created.access_key, PROJECT, "active")]
    assert created.secret_key not in listed[0].model_dump_json()


def test_a_project_id_that_is_no_project_id_is_refused_and_nothing_is_stored(store: AccessKeyStore) -> None:
    with pytest.raises(RequestRejectedError):
        store.create("not a project/id")
    assert stored_items(store) == []


def test_revoking_disables_the_key_and_an_unknown_key_cannot_be_revoked(store: AccessKeyStore) -> None:
    created = store.create(PROJECT)
    revoked = store.revoke(created.access_key)
    assert revoked.status == "revoked" and revoked.revoked_at
    assert store.verifiable(created.access_key).active is False  # type: ignore[union-attr]
    with pytest.raises(UnknownAccessKeyError):
        store.revoke("HSTNOSUCHKEY00000000")


class CountingTable:
    def __init__(self, table: Any) -> None:
        self.table, self.reads = table, 0

    def get_item(self, **request: Any) -> Any:
        self.reads += 1
        return self.table.get_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


def test_at_steady_state_verification_reads_nothing_from_dynamodb(store: AccessKeyStore) -> None:
    created = store.create(PROJECT)
    counting = CountingTable(store.table)
    reading = AccessKeyStore(table=counting)
    for _ in range(50):
        key = cached_key(created.access_key, reading, ttl_seconds=60)
        assert key is not None and key.project_id == PROJECT
    assert counting.reads == 1
    # unknown ids are remembered too: guessing does not cost a read per guess
    for _ in range(5):
        assert cached_key("HSTGUESS000000000000", reading, ttl_seconds=60) is None
    assert counting.reads == 2


def sdk_event(access_key: str, secret_key: str, path: str, project: str = PROJECT) -> dict[str, Any]:
    request = SdkRequest(
        method="GET",
        schema="https",
        host="ims.example.com",
        resource_path=path,
        query_params=[],
        header_params={"X-Project-Id": project, "Content-Type": "application/json"},
        body=None,
    )
    Signer(BasicCredentials(access_key, secret_key, project)).sign(request)
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {name.lower(): str(value) for name, value in request.header_params.items()},
        "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default", "requestId": "r"},
        "isBase64Encoded": False,
    }


def test_a_route_added_to_any_resolver_is_verified_before_it_runs(store: AccessKeyStore) -> None:
    # Given a route someone adds later, which never asks for the caller's project itself
    app = make_resolver()
    runs: list[str] = []

    @app.get("/v2/quota")
    def quota() -> dict[str, str]:
        runs.append("ran")
        return {"project": current_project(app)}

    created = store.create(PROJECT)
    # When it is called with a wrong secret, then with the right one
    refused = app.resolve(sdk_event(created.access_key, "x" * 40, "/v2/quota"), {})
    accepted = app.resolve(sdk_event(created.access_key, created.secret_key, "/v2/quota"), {})
    # Then the wrong one is refused before the route runs, and the right one acts for the key's project
    assert refused["statusCode"] == 401
    assert json.loads(refused["body"])["error"]["code"] == "APIGW.0301"
    assert runs == ["ran"]
    assert accepted["statusCode"] == 200 and json.loads(accepted["body"]) == {"project": PROJECT}
