"""Local mode's own answers on the emulator's HTTP front: its pages, and the IMS error body for the rest.

The pages: `GET /openapi.json`, Swagger UI on it at `/swagger` (Powertools' own Swagger UI, its HTML
generator and the bundle it ships, with the script and style inlined, so it works with no network beyond
local mode), and `GET /` pointing at both. The answers no function gives (no route, a body over 10 MB, a
failed function) carry IMS's error body, so clients keep parsing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html
from diskport.errors import DiskportError

from diskport_emulator import FrontRequest, FrontResponse

SWAGGER_PATH = "/swagger"
OPENAPI_PATH = "/openapi.json"
# The IMS codes of the front's own answers; any other status gets DiskportError's (IMG.0061).
_FRONT_ERROR_CODES = {404: "IMG.0404", 413: "IMG.0001"}


@cache
def _bundle() -> tuple[str, str]:
    folder = Path(swagger_ui.__file__).parent
    return (folder / "swagger-ui-bundle.min.js").read_text(), (folder / "swagger-ui.min.css").read_text()


def swagger_page(document: dict[str, Any]) -> bytes:
    script, style = _bundle()
    return generate_swagger_html(json.dumps(document), script, style, "", None).encode("utf-8")


def index(wants_html: bool) -> tuple[int, dict[str, str], bytes]:
    """`GET /`: a browser goes to the API page; anything else gets the links as JSON."""
    if wants_html:
        return 302, {"location": SWAGGER_PATH}, b""
    links = {
        "service": "diskport: IMS-compatible data disk image import (local mode)",
        "api_page": SWAGGER_PATH,
        "openapi": OPENAPI_PATH,
    }
    return 200, {"content-type": "application/json"}, json.dumps(links, indent=2).encode("utf-8")


def local_pages(openapi_document: Callable[[], dict[str, Any]]) -> Callable[[FrontRequest], FrontResponse | None]:
    """The front's pages: the OpenAPI document, its Swagger UI page and the index; None for anything else."""

    def page(request: FrontRequest) -> FrontResponse | None:
        path = urlsplit(request.target).path or "/"
        if request.method != "GET":
            return None
        if path == OPENAPI_PATH:
            return FrontResponse(
                200, {"content-type": "application/json"}, json.dumps(openapi_document(), indent=2).encode()
            )
        if path == SWAGGER_PATH:
            return FrontResponse(200, {"content-type": "text/html; charset=utf-8"}, swagger_page(openapi_document()))
        if path == "/":
            accept = ",".join(value for name, value in request.headers.items() if name.lower() == "accept")
            return FrontResponse(*index("text/html" in accept))
        return None

    return page


def ims_error_response(status: int, message: str) -> FrontResponse:
    """One of the front's own answers with IMS's error body: `{"error": {"code": "IMG.xxxx", "message": ...}}`."""
    code = _FRONT_ERROR_CODES.get(status)
    error = (DiskportError(message, code=code) if code else DiskportError(message)).with_status(status)
    return FrontResponse(error.http_status, {"content-type": "application/json"}, json.dumps(error.to_body()).encode())
