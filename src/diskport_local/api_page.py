"""The API to look at rather than read: Swagger UI on the OpenAPI document, and `GET /` pointing at both.

The page is Powertools' own Swagger UI (its HTML generator and the bundle it ships), with the script and style
inlined, so it works with no network beyond local mode.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi import swagger_ui
from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

SWAGGER_PATH = "/swagger"
OPENAPI_PATH = "/openapi.json"


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
