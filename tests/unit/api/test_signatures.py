"""The AK/SK verifier accepts exactly what the Huawei Cloud SDK's own signer signs, and nothing changed after.

Each generated request is signed by `huaweicloudsdkcore`'s Signer, then delivered to the verifier the way API
Gateway's HTTP API delivers it to a function: the path percent-decoded (`rawPath`), the query string as sent, the
header names lower-cased, the body as text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import pytest
from diskport.api.signatures import (
    SignatureRejectedError,
    SignedRequest,
    TemporaryCredentialsRefusedError,
    verified_project,
)
from diskport.stores.access_keys import VerifiableKey
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:huaweicloudsdkcore.signer.signer")

ACCESS_KEY = "HSTLOCALACCESSKEY001"
SECRET_KEY = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3Tabcd"
PROJECT = "0123456789abcdef0123456789abcdef"
HOST = "ims.example.com:8443"
SKEW = 900.0
KEYS = {ACCESS_KEY: VerifiableKey(ACCESS_KEY, PROJECT, True, SECRET_KEY)}


def find_key(access_key: str) -> VerifiableKey | None:
    return KEYS.get(access_key)


def sdk_signed(
    method: str,
    path_segments: list[str],
    query: list[tuple[str, Any]],
    body: bytes | None,
    *,
    secret: str = SECRET_KEY,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> SdkRequest:
    """A request as the SDK's client builds and signs it: path parameters quoted with safe='' (client.py)."""
    resource_path = "/" + "/".join(quote(segment, safe="") for segment in path_segments)
    header_params = {
        "Content-Type": "application/json;charset=UTF-8",
        "User-Agent": "huaweicloud-usdk-python/3.0",
        "X-Project-Id": PROJECT,
        **(headers or {}),
    }
    if date is not None:
        header_params["X-Sdk-Date"] = date.strftime("%Y%m%dT%H%M%SZ")
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=resource_path,
        query_params=list(query),
        header_params=header_params,
        body=body,
    )
    return Signer(BasicCredentials(ACCESS_KEY, secret, PROJECT)).sign(request)


def delivered(request: SdkRequest, *, body: bytes | None = None) -> SignedRequest:
    """What the function receives from API Gateway for the SDK's request (its `uri` is path?canonical-query)."""
    path, _, raw_query = request.uri.partition("?")
    sent_body = request.body if body is None else body
    return SignedRequest(
        method=request.method,
        path=unquote(path),
        raw_query=raw_query,
        headers={name.lower(): str(value) for name, value in request.header_params.items()},
        body=sent_body or b"",
    )


def verify(request: SignedRequest, *, now: datetime | None = None, path_project: str | None = None) -> str:
    project, _ = verified_project(request, find_key, max_skew_seconds=SKEW, path_project_id=path_project, now=now)
    return project


# Path segments with reserved and non-ASCII characters; "/" inside a segment is left out (API Gateway decodes %2F
# into a separator before the function sees it, so such a path can never be told apart).
segment_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=12
)
query_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)
query_params = st.lists(
    st.tuples(
        st.sampled_from(["id", "name", "status", "__imagetype", "limit", "marker", "tag", "a b", "ü", "x&y=z"]),
        st.one_of(query_text, st.just("")),
    ),
    max_size=6,
)
json_bodies = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers()), max_size=4).map(
        lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8")
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path_segments=st.lists(segment_text, min_size=1, max_size=5),
    query=query_params,
    body=json_bodies,
)
def test_every_request_the_sdk_signs_is_verified_as_the_keys_project(
    method: str, path_segments: list[str], query: list[tuple[str, Any]], body: bytes | None
) -> None:
    signed = sdk_signed(method, path_segments, query, body)
    assert verify(delivered(signed)) == PROJECT


@settings(max_examples=150, deadline=None)
@given(
    path_segments=st.lists(segment_text, min_size=1, max_size=4),
    query=query_params,
    body=json_bodies.filter(lambda body: body is not None),
    tamper=st.sampled_from(["body", "query", "path", "method"]),
)
def test_any_change_after_signing_is_refused(
    path_segments: list[str], query: list[tuple[str, Any]], body: bytes, tamper: str
) -> None:
    signed = sdk_signed("POST", path_segments, query, body)
    request = delivered(signed)
    changed = {
        "body": SignedRequest(request.method, request.path, request.raw_query, request.headers, request.body + b" "),
        "query": SignedRequest(request.method, request.path, request.raw_query + "&extra=1", request.headers, body),
        "path": SignedRequest(request.method, request.path + "x", request.raw_query, request.headers, body),
        "method": SignedRequest("PUT", request.path, request.raw_query, request.headers, body),
    }[tamper]
    with pytest.raises(SignatureRejectedError):
        verify(changed)


def test_repeated_and_empty_query_parameters_are_signed_as_the_sdk_sorts_them() -> None:
    signed = sdk_signed("GET", ["v2", "cloudimages"], [("tag", ["b.2", "a.1"]), ("name", ""), ("limit", 5)], None)
    assert signed.uri.endswith("?limit=5&name=&tag=a.1&tag=b.2")
    assert verify(delivered(signed)) == PROJECT
    # the same pairs in another order on the wire sign the same
    reordered = delivered(signed)
    reordered = SignedRequest("GET", reordered.path, "tag=b.2&name=&tag=a.1&limit=5", reordered.headers, b"")
    assert verify(reordered) == PROJECT


def test_a_wrong_secret_is_refused_and_the_caller_is_not_told_why() -> None:
    signed = sdk_signed("GET", ["v2", "cloudimages"], [], None, secret="not-the-secret")
    with pytest.raises(SignatureRejectedError) as refused:
        verify(delivered(signed))
    assert "does not match" in refused.value.log_reason
    assert refused.value.http_status == 401
    expected = {"error": {"code": "APIGW.0301", "message": SignatureRejectedError.CALLER_MESSAGE}}
    assert refused.value.to_body() == expected


def test_an_unknown_access_key_is_refused_like_a_wrong_secret() -> None:
    signed = sdk_signed("GET", ["v2", "cloudimages"], [], None)
    request = delivered(signed)
    headers = dict(request.headers)
    headers["authorization"] = headers["authorization"].replace(ACCESS_KEY, "HSTNOSUCHKEY00000000")
    with pytest.raises(SignatureRejectedError) as refused:
        verify(SignedRequest(request.method, request.path, request.raw_query, headers, request.body))
    assert refused.value.log_reason == "unknown access key HSTNOSUCHKEY00000000"
    assert refused.value.to_body()["error"]["message"] == SignatureRejectedError.CALLER_MESSAGE


def test_a_revoked_key_is_refused() -> None:
    KEYS["HSTREVOKEDKEY0000000"] = VerifiableKey("HSTREVOKEDKEY0000000", PROJECT, False, SECRET_KEY)
    request = delivered(sdk_signed("GET", ["v2", "cloudimages"], [], None))
    headers = dict(request.headers)
    headers["authorization"] = headers["authorization"].replace(ACCESS_KEY, "HSTREVOKEDKEY0000000")
    with pytest.raises(SignatureRejectedError) as refused:
        verify(SignedRequest(request.method, request.path, request.raw_query, headers, request.body))
    assert "revoked" in refused.value.log_reason


@pytest.mark.parametrize("minutes", [-20, 20])
def test_a_date_more_than_fifteen_minutes_from_now_is_refused(minutes: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    signed = sdk_signed("GET", ["v2", "cloudimages"], [], None, date=now + timedelta(minutes=minutes))
    with pytest.raises(SignatureRejectedError) as refused:
        verify(delivered(signed), now=now)
    assert "X-Sdk-Date" in refused.value.log_reason
    # and fourteen minutes are within the bound
    signed = sdk_signed("GET", ["v2", "cloudimages"], [], None, date=now + timedelta(minutes=14 * minutes // 20))
    assert verify(delivered(signed), now=now) == PROJECT


def test_another_project_in_the_header_or_the_path_is_refused() -> None:
    other = "ffffffffffffffffffffffffffffffff"
    signed = sdk_signed("GET", ["v1", other, "jobs", "0" * 32], [], None, headers={"X-Project-Id": other})
    with pytest.raises(SignatureRejectedError):
        verify(delivered(signed))
    signed = sdk_signed("GET", ["v1", other, "jobs", "0" * 32], [], None)
    with pytest.raises(SignatureRejectedError) as refused:
        verify(delivered(signed), path_project=other)
    assert "in the path" in refused.value.log_reason
    assert verify(delivered(signed), path_project=PROJECT) == PROJECT


def test_temporary_credentials_are_refused_plainly() -> None:
    signed = sdk_signed("GET", ["v2", "cloudimages"], [], None, headers={"X-Security-Token": "token-from-sts"})
    with pytest.raises(TemporaryCredentialsRefusedError) as refused:
        verify(delivered(signed))
    assert "X-Security-Token" in refused.value.to_body()["error"]["message"]


def test_an_unsigned_payload_is_accepted_only_for_a_body_that_is_not_json() -> None:
    # The SDK itself sends UNSIGNED-PAYLOAD for non-JSON bodies
    signed = sdk_signed(
        "POST", ["v1", "upload"], [], b"\x00raw bytes", headers={"Content-Type": "application/octet-stream"}
    )
    assert signed.header_params["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert verify(delivered(signed)) == PROJECT
    # A JSON body declared unsigned would be open to change: refused
    signed = sdk_signed("POST", ["v1", "x"], [], b'{"a": 1}', headers={"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(SignatureRejectedError):
        verify(delivered(signed))


def test_a_request_without_a_signature_or_with_unsigned_project_header_is_refused() -> None:
    request = delivered(sdk_signed("GET", ["v2", "cloudimages"], [], None))
    unsigned = {name: value for name, value in request.headers.items() if name != "authorization"}
    with pytest.raises(SignatureRejectedError):
        verify(SignedRequest("GET", request.path, "", unsigned, b""))
    headers = dict(request.headers)
    headers["authorization"] = headers["authorization"].replace("x-project-id;", "")
    with pytest.raises(SignatureRejectedError) as refused:
        verify(SignedRequest("GET", request.path, "", headers, b""))
    assert "not signed" in refused.value.log_reason


def test_the_event_api_gateway_builds_is_read_byte_for_byte() -> None:
    body = json.dumps({"name": "données-☃"}, ensure_ascii=False).encode("utf-8")
    signed = sdk_signed("POST", ["v1", "cloudimages", "dataimages", "action"], [], body)
    event = {
        "rawPath": "/v1/cloudimages/dataimages/action",
        "rawQueryString": "",
        "headers": {name.lower(): str(value) for name, value in signed.header_params.items()},
        "requestContext": {"http": {"method": "POST"}},
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }
    assert verify(SignedRequest.from_http_api_event(event)) == PROJECT
