"""IMS "Querying Images" (`GET /v2/cloudimages`): the caller's images, filtered and paged by marker."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from diskport.images import ImageFilters, ImageStore

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
PATH = "/v2/cloudimages"


class ImageList(BaseModel):
    """`{"images": [...]}`, and `next` (the link to the following page) when more images match."""

    images: list[dict[str, Any]] = Field(description="Image records as IMS returns them (`__os_type`, ...).")
    next: str | None = Field(None, description="The link to the next page; absent on the last page.")

    @model_serializer(mode="wrap")
    def _without_absent_next(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Glance and IMS leave `next` out on the last page rather than sending null.
        body: dict[str, Any] = serialize(self)
        if body.get("next") is None:
            body.pop("next", None)
        return body


def list_images(
    project_id: str,
    filters: ImageFilters,
    *,
    limit: int = DEFAULT_LIMIT,
    marker: str | None = None,
    images: ImageStore | None = None,
) -> dict[str, Any]:
    """The project's images matching `filters`, newest first, at most `limit` after the image `marker`."""
    page = (images or ImageStore()).page_for_project(project_id, filters, limit=limit, marker=marker)
    body: dict[str, Any] = {"images": [image.to_wire() for image in page.images]}
    if page.next_marker is not None:
        following = {**filters.model_dump(by_alias=True, exclude_none=True), "limit": limit, "marker": page.next_marker}
        body["next"] = f"{PATH}?{urlencode(following)}"
    return body
