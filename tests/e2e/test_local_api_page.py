"""Local mode serves its API page, printed in its banner and linked from `GET /`."""

from __future__ import annotations

import urllib.request

from .conftest import LocalModeProcess


def test_the_banner_names_the_api_page_and_it_serves_swagger_ui(local_mode: LocalModeProcess) -> None:
    assert f"API page       {local_mode.api_url}/swagger" in local_mode.log.read_text()
    assert local_mode.call("GET", "/").body["api_page"] == "/swagger"
    with urllib.request.urlopen(f"{local_mode.api_url}/swagger", timeout=30) as page:
        html = page.read().decode()
    assert "SwaggerUIBundle" in html and "/v1/cloudimages/dataimages/action" in html
