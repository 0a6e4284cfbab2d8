"""Local mode's API page: Swagger UI on the OpenAPI document, linked from `GET /`."""

from __future__ import annotations

import json
from typing import Any

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import ApiFront, FrontRequest
from diskport_local.api_page import local_pages

DOCUMENT = {"openapi": "3.1.0", "info": {"title": "diskport", "version": "1"}, "paths": {"/v2/cloudimages": {}}}


def _front() -> ApiFront:
    def no_function(function: str, event: dict[str, Any]) -> tuple[str, bool]:
        raise AssertionError(f"{function} should not be called")

    return ApiFront(LocalStack().api_routes(), no_function, pages=local_pages(lambda: DOCUMENT))


def test_the_api_page_is_swagger_ui_holding_the_openapi_document() -> None:
    answer = _front().answer(FrontRequest("GET", "/swagger", {}))
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.body.decode()
    assert "SwaggerUIBundle" in page  # the bundle is inlined: the page needs no network
    assert json.dumps(DOCUMENT) in page


def test_the_root_links_the_api_page_and_the_document() -> None:
    answer = _front().answer(FrontRequest("GET", "/", {"Accept": "application/json"}))
    assert answer.status == 200
    assert answer.json()["api_page"] == "/swagger"
    assert answer.json()["openapi"] == "/openapi.json"


def test_a_browser_at_the_root_is_sent_to_the_api_page() -> None:
    answer = _front().answer(FrontRequest("GET", "/", {"Accept": "text/html,application/xhtml+xml"}))
    assert (answer.status, answer.headers["location"]) == (302, "/swagger")
