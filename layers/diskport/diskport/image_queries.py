"""IMS "Querying Images" (`GET /v2/cloudimages`): the caller's images, filtered and paged by marker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from diskport.errors import RequestRejectedError
from diskport.images import ImageFilters, ImageStore

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
PATH = "/v2/cloudimages"


def list_images(project_id: str, query: Mapping[str, str], images: ImageStore | None = None) -> dict[str, Any]:
    """`{"images": [...]}` — with `next`, the link to the following page, when more images match."""
    filters = ImageFilters.model_validate(
        {name: query[name] for name in ("id", "name", "status", "__imagetype") if name in query}
    )
    limit = _limit(query.get("limit"))
    page = (images or ImageStore()).page_for_project(project_id, filters, limit=limit, marker=query.get("marker"))
    body: dict[str, Any] = {"images": [image.to_wire() for image in page.images]}
    if page.next_marker is not None:
        following = {**{name: value for name, value in query.items() if name != "marker"}, "marker": page.next_marker}
        body["next"] = f"{PATH}?{urlencode(following)}"
    return body


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise RequestRejectedError("IMG.0001", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(raw)
