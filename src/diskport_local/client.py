"""A small client of the diskport IMS API, for the CLI: local mode unsigned, a deployed stack signed with SigV4.

A deployed stack's HTTP API uses IAM auth, so each request carries an AWS Signature Version 4 for the
service `execute-api`, made by botocore from the caller's usual AWS credentials. Errors come back as the
service's own `DiskportError`, with the IMS code and message the API answered.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from diskport.api.signatures import DATE_FORMAT, SignedRequest, signature_of
from diskport.errors import DiskportError, ServiceUnavailableError

_REGION_IN_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def region_of_endpoint(endpoint: str) -> str | None:
    """The region in an API Gateway endpoint such as https://abc123.execute-api.eu-west-1.amazonaws.com."""
    found = _REGION_IN_API_HOST.search(urlsplit(endpoint).netloc)
    return found.group(1) if found else None


class SigV4Signer:
    """Signs requests for API Gateway's IAM authorization (service `execute-api`)."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._auth = SigV4Auth(credentials, "execute-api", region)

    def signed_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        self._auth.add_auth(request)
        return dict(request.headers.items())


class AkSkSigner:
    """Signs requests with an IMS access key (SDK-HMAC-SHA256), as the Huawei Cloud SDKs do."""

    def __init__(self, access_key: str, secret_key: str, project_id: str) -> None:
        self._access_key, self._secret_key, self._project_id = access_key, secret_key, project_id

    def signed_headers(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        split = urlsplit(url)
        signed = {
            **{name.lower(): value for name, value in headers.items()},
            "host": split.netloc,
            "x-project-id": self._project_id,
            "x-sdk-date": datetime.now(UTC).strftime(DATE_FORMAT),
        }
        names = sorted(signed)
        request = SignedRequest(method, unquote(split.path or "/"), split.query, signed, body)
        signature = signature_of(request, names, signed["x-sdk-date"], self._secret_key)
        authorization = (
            f"SDK-HMAC-SHA256 Access={self._access_key}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return {**signed, "authorization": authorization}


class ApiClient:
    """The IMS calls diskport serves, over HTTP."""

    def __init__(
        self, endpoint: str, signer: SigV4Signer | AkSkSigner | None = None, timeout_seconds: float = 30
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._signer = signer
        self._timeout = timeout_seconds

    def create_data_image(self, request: dict[str, Any]) -> str:
        """POST /v1/cloudimages/dataimages/action; the new job's id."""
        answer = self.call("POST", "/v1/cloudimages/dataimages/action", body=request)
        return str(answer["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/cloudimages/job/{job_id}: the job with its progress (process_percent, current_task)."""
        answer: dict[str, Any] = self.call("GET", f"/v1/cloudimages/job/{job_id}")
        return answer

    def images(self, image_id: str | None = None) -> list[dict[str, Any]]:
        """GET /v2/cloudimages[?id=...]: the project's images, following the `next` link page by page."""
        answer = self.call("GET", "/v2/cloudimages", query={"id": image_id} if image_id else None)
        images = list(answer.get("images", []))
        while answer.get("next"):
            path, _, query = str(answer["next"]).partition("?")
            answer = self.call("GET", path, query=dict(parse_qsl(query, keep_blank_values=True)))
            images.extend(answer.get("images", []))
        return images

    def call(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None) -> Any:
        url = self.endpoint + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        if self._signer is not None:
            headers = self._signer.signed_headers(method, url, headers, data)
        request = urllib.request.Request(url, data=data if body is not None else None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise _api_error(error.code, error.read()) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceUnavailableError(
                f"Nothing answers at {self.endpoint} ({reason}). Start local mode with `make run` "
                "(or `diskport serve`), or name a deployed stack with --endpoint."
            ) from None


def _api_error(status: int, body: bytes) -> DiskportError:
    """The IMS error an API answer carries, as the service's own error type."""
    try:
        detail = json.loads(body)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        # API Gateway's own refusals (a bad signature, throttling) are {"message": "..."}.
        code, message = "IMG.0061", body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    return DiskportError(message, code=code).with_status(status)
