"""Verification of IMS AK/SK signatures (`SDK-HMAC-SHA256`) on the raw API Gateway HTTP API event.

An HTTP API authorizer never sees the request body, which the signature covers, so every API function checks the
signature itself, through `make_resolver` (`resolver.py`), before any route runs. The canonical request is
rebuilt exactly as the Huawei Cloud SDK's signer (huaweicloudsdkcore/signer/signer.py) builds it:

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n signed headers \\n body hash

- the URI: each path segment percent-encoded (everything but letters, digits and `-_.~`) and a trailing `/`.
  API Gateway hands the function the path already percent-decoded (`rawPath`), the form the SDK's signer
  decodes the path to before encoding it;
- the query: every `name=value` pair of the raw query string decoded, sorted by name then value, encoded again;
- each signed header as `name:value` (trimmed), in the sorted order of the `SignedHeaders` list;
- the hex SHA-256 of the exact body bytes; an empty body hashes as empty whatever the headers say; a non-JSON body
  may be sent with `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` (what the SDK does), in which case the literal is
  signed. A JSON body (all this API accepts) must be hashed: the literal would leave it unprotected.

The string to sign is `SDK-HMAC-SHA256 \\n X-Sdk-Date \\n hex SHA-256 of the canonical request`, and the signature is
its hex HMAC-SHA256 keyed with the secret itself, compared in constant time. The date must be within
SIGNATURE_MAX_SKEW_SECONDS of now. The key's project is the caller's project: `X-Project-Id`, when sent, and the
path's `{project_id}`, when the route has one, must both be it.

Any failure answers 401 with one fixed IMS body; why it failed goes to the log only, so a caller probing with
made-up keys, secrets or dates learns nothing from the answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from diskport.errors import DiskportError
from diskport.stores.access_keys import VerifiableKey

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_BODY_HASH = hashlib.sha256(b"").hexdigest()
# Headers a signature must cover: without `host` a request could be replayed to another endpoint, without the date
# it could be replayed for ever; the project and the body hash decide what the request does.
REQUIRED_SIGNED_HEADERS = ("host", "x-sdk-date")
SIGNED_WHEN_PRESENT = ("x-project-id", "x-sdk-content-sha256", "x-security-token")
_AUTHORIZATION = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<access>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-fA-F]{64})\s*$"
)
_SAFE = "~"  # the SDK's quote(s, safe='~'): letters, digits and _.- stay, all else is %XX (UTF-8)

# Looks a key up by access key id (cached), None when there is no such key.
KeyLookup = Callable[[str], VerifiableKey | None]


class SignatureRejectedError(DiskportError):
    """A request whose signature does not stand: 401, the same answer whatever the cause.

    `log_reason` says what was wrong, for the log; the caller sees only the fixed message.
    """

    code = "APIGW.0301"
    http_status = 401
    CALLER_MESSAGE = "Incorrect IAM authentication information: the request signature could not be verified."

    def __init__(self, log_reason: str, caller_message: str | None = None) -> None:
        super().__init__(caller_message or self.CALLER_MESSAGE)
        self.log_reason = log_reason


class TemporaryCredentialsRefusedError(SignatureRejectedError):
    """Temporary credentials (`X-Security-Token`) are refused plainly: this service issues none it could check."""

    CALLER_MESSAGE = (
        "Temporary security credentials (X-Security-Token) are not accepted by this service: "
        "sign with a permanent access key (diskport access-key create)."
    )

    def __init__(self) -> None:
        super().__init__("the request carries X-Security-Token (temporary credentials)", self.CALLER_MESSAGE)


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request a signature covers, as API Gateway delivers them to the function."""

    method: str
    path: str  # percent-decoded, as API Gateway's rawPath
    raw_query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @classmethod
    def from_http_api_event(cls, event: Mapping[str, Any]) -> SignedRequest:
        context = event.get("requestContext") or {}
        body_text = event.get("body")
        if body_text is None:
            body = b""
        elif event.get("isBase64Encoded"):
            body = base64.b64decode(body_text)
        else:
            body = str(body_text).encode("utf-8")
        headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
        return cls(
            method=str((context.get("http") or {}).get("method") or ""),
            path=str(event.get("rawPath") or "/"),
            raw_query=str(event.get("rawQueryString") or ""),
            headers=headers,
            body=body,
        )


def canonical_uri(path: str) -> str:
    encoded = "/".join(quote(segment, safe=_SAFE) for segment in path.split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&"):
        if part == "":
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    pairs.sort()
    return "&".join(f"{quote(name, safe=_SAFE)}={quote(value, safe=_SAFE)}" for name, value in pairs)


def body_hash(request: SignedRequest) -> str:
    if not request.body:
        return EMPTY_BODY_HASH
    declared = request.headers.get("x-sdk-content-sha256")
    actual = hashlib.sha256(request.body).hexdigest()
    if declared is None:
        return actual
    if declared == UNSIGNED_PAYLOAD:
        content_type = request.headers.get("content-type", "").strip().lower()
        if content_type.startswith(("application/json", "application/bson")) or content_type == "":
            raise SignatureRejectedError("UNSIGNED-PAYLOAD declared for a JSON body, which must be hashed")
        return UNSIGNED_PAYLOAD
    if not hmac.compare_digest(declared.lower(), actual):
        raise SignatureRejectedError("X-Sdk-Content-Sha256 is not the SHA-256 of the body")
    return declared


def canonical_request(request: SignedRequest, signed_headers: list[str]) -> str:
    headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed_headers)
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.path),
            canonical_query(request.raw_query),
            headers,
            ";".join(signed_headers),
            body_hash(request),
        ]
    )


def signature_of(request: SignedRequest, signed_headers: list[str], date: str, secret_key: str) -> str:
    digest = hashlib.sha256(canonical_request(request, signed_headers).encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verified_project(
    request: SignedRequest,
    find_key: KeyLookup,
    *,
    max_skew_seconds: float,
    path_project_id: str | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """The project and access key of a correctly signed request; SignatureRejectedError otherwise."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise SignatureRejectedError("no Authorization header")
    parsed = _AUTHORIZATION.match(authorization.strip())
    if parsed is None:
        raise SignatureRejectedError(f"the Authorization header is not {ALGORITHM} Access=, SignedHeaders=, Signature=")
    access_key = parsed.group("access")
    signed_headers = parsed.group("headers").split(";")
    if "x-security-token" in request.headers:
        raise TemporaryCredentialsRefusedError()
    if signed_headers != sorted(set(signed_headers)) or any(name != name.lower() for name in signed_headers):
        raise SignatureRejectedError(f"access key {access_key}: SignedHeaders is not a sorted list of distinct names")
    for name in REQUIRED_SIGNED_HEADERS:
        if name not in signed_headers:
            raise SignatureRejectedError(f"access key {access_key}: header {name} is not signed")
    for name in SIGNED_WHEN_PRESENT:
        if name in request.headers and name not in signed_headers:
            raise SignatureRejectedError(f"access key {access_key}: header {name} is sent but not signed")
    missing = [name for name in signed_headers if name not in request.headers]
    if missing:
        raise SignatureRejectedError(f"access key {access_key}: signed headers {missing} are not in the request")

    date = request.headers["x-sdk-date"].strip()
    try:
        signed_at = datetime.strptime(date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureRejectedError(f"access key {access_key}: X-Sdk-Date {date!r} is not {DATE_FORMAT}") from None
    skew = abs(((now or datetime.now(UTC)) - signed_at).total_seconds())
    if skew > max_skew_seconds:
        raise SignatureRejectedError(
            f"access key {access_key}: X-Sdk-Date is {skew:.0f} s from now (at most {max_skew_seconds:.0f} s)"
        )

    key = find_key(access_key)
    if key is None:
        raise SignatureRejectedError(f"unknown access key {access_key}")
    if not key.active:
        raise SignatureRejectedError(f"access key {access_key} is revoked")
    expected = signature_of(request, signed_headers, date, key.secret_key)
    if not hmac.compare_digest(expected, parsed.group("signature").lower()):
        raise SignatureRejectedError(f"access key {access_key}: the signature does not match the request")

    header_project = request.headers.get("x-project-id")
    if header_project is not None and header_project.strip() != key.project_id:
        raise SignatureRejectedError(
            f"access key {access_key} of project {key.project_id} sent X-Project-Id {header_project.strip()}"
        )
    if path_project_id is not None and path_project_id != key.project_id:
        raise SignatureRejectedError(
            f"access key {access_key} of project {key.project_id} named project {path_project_id} in the path"
        )
    return key.project_id, access_key
