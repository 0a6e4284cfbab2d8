"""IMS image tags: `GET /v2/{project_id}/images/{image_id}/tags` and the batch `POST .../tags/action`.

`create` adds tags or changes the value of keys the image has; `delete` removes the keys named (their values are
not compared). The rules are those of creating an image (image_tag_format.rst): at most 10 tags, keys unique,
spaces around keys and values trimmed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from diskport.domain.requests import MAX_TAGS, check_tag_set, trimmed_image_tags
from diskport.errors import ImageUnavailableError, RequestRejectedError, ServiceUnavailableError
from diskport.stores.images import ImageStore

# A tag change rereads the image and tries again when another change won the race; more than this many in a row
# means the image is being changed continuously.
_ATTEMPTS = 5


class ResourceTag(BaseModel):
    key: str
    value: str


class ImageTagList(BaseModel):
    """`{"tags": [{"key": ..., "value": ...}]}` (querying_tags_of_an_image.rst)."""

    tags: list[ResourceTag]


class TagActionRequest(BaseModel):
    """Body of `POST /v2/{project_id}/images/{image_id}/tags/action`."""

    action: Literal["create", "delete"] = Field(description="create (add or update) or delete; case sensitive.")
    tags: list[ResourceTag] = Field(description="The tags to add, update or delete.", min_length=1)

    @field_validator("tags", mode="before")
    @classmethod
    def _check_tags(cls, tags: Any) -> Any:
        pairs = trimmed_image_tags(tags)
        check_tag_set(pairs)
        return [{"key": key, "value": value} for key, value in pairs]


def check_project(path_project_id: str, caller_project_id: str) -> None:
    """The project in a path must be the caller's own (IMG.0067)."""
    if path_project_id != caller_project_id:
        raise RequestRejectedError("IMG.0067", f"Project {path_project_id} is not the project of your credentials.")


def image_tags(image_id: str, project_id: str, images: ImageStore) -> ImageTagList:
    image = images.existing(image_id, project_id)
    return ImageTagList(tags=[ResourceTag(key=key, value=value) for key, value in image.tag_pairs])


def change_tags(image_id: str, project_id: str, request: TagActionRequest, images: ImageStore) -> None:
    """Apply a batch tag action to an active image, as one conditional write (never losing a concurrent change)."""
    for _ in range(_ATTEMPTS):
        image = images.existing(image_id, project_id)
        if image.status != "active":
            raise ImageUnavailableError(f"Image {image_id} is {image.status}; only an active image's tags change.")
        tags = dict(image.tag_pairs)
        for tag in request.tags:
            if request.action == "create":
                tags[tag.key] = tag.value
            else:
                tags.pop(tag.key, None)
        if len(tags) > MAX_TAGS:
            raise RequestRejectedError("IMG.0116", f"The image would hold {len(tags)} tags; at most {MAX_TAGS} may be.")
        if images.update_if_unchanged(image, tags=[f"{key}.{value}" for key, value in tags.items()]):
            return
    raise ServiceUnavailableError(f"Image {image_id} kept changing while its tags were updated; retry.")
