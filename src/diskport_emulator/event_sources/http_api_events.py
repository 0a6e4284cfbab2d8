"""API Gateway HTTP API (payload 2.0) proxy events, built the way API Gateway builds them.

Local mode's HTTP front and the tests both call the handlers through these, since moto does not run
API Gateway integrations.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from diskport_emulator.template import ApiRoute


def http_api_event(
    route: ApiRoute,
    *,
    path: str,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    account_id: str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The event API Gateway would hand the route's function, signed in as `account_id` when given."""
    headers = {name.lower(): value for name, value in (headers or {}).items()}
    is_base64 = False
    body_text: str | None
    if isinstance(body, bytes):
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            body_text, is_base64 = base64.b64encode(body).decode("ascii"), True
    else:
        body_text = body
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": headers.get("host", "localhost"),
        "domainPrefix": "localhost",
        "http": {
            "method": route.method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": f"{route.method} {route.path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "timeEpoch": int(time.time() * 1000),
    }
    if account_id is not None:
        request_context["authorizer"] = {
            "iam": {
                "accessKey": "AKIALOCAL",
                "accountId": account_id,
                "callerId": "AIDALOCAL",
                "principalOrgId": None,
                "userArn": f"arn:aws:iam::{account_id}:user/local",
                "userId": "AIDALOCAL",
            }
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{route.method} {route.path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": request_context,
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body_text is not None:
        event["body"] = body_text
    return event
