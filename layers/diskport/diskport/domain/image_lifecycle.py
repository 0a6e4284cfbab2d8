"""The rest of a data image's life: updating its attributes (`PATCH /v2/cloudimages/{image_id}`) and deleting it
(`DELETE /v2/images/{image_id}`), as updating_an_image.rst and deleting_an_image_native_openstack_api.rst say.

Only an active image is updated (IMG.0046 otherwise). An image still being imported, `queued` or `saving`, is not
deleted (IMG.0090): its import owns the snapshot until it ends. Deleting removes the snapshot, then marks the record
`deleted` and gives its place in the project's quota back, in one transaction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from diskport.domain.requests import check_description, check_enterprise_project_id, check_image_name
from diskport.errors import ImageBusyError, ImageUnavailableError, NotFoundError, ServiceUnavailableError
from diskport.stores import Stores
from diskport.stores.images import UPDATABLE_ATTRIBUTES, ImageStore

# An update rereads the image and tries again when another change won the race.
_ATTEMPTS = 5
# Attributes that may be removed, and what they read as afterwards (None: absent from the record).
_REMOVABLE: dict[str, Any] = {"__description": "", "max_ram": None}
# The IMS attribute name of each updatable attribute, as the record stores it.
_STORED_AS = {
    "name": "name",
    "__description": "description",
    "enterprise_project_id": "enterprise_project_id",
    "min_ram": "min_ram",
    "max_ram": "max_ram",
}


class ImagePatchOperation(BaseModel):
    """One item of the JSON patch `PATCH /v2/cloudimages/{image_id}` takes."""

    op: Literal["add", "replace", "remove"] = Field(description="add, replace or remove.")
    path: str = Field(description=f"The attribute, with a leading '/': one of {', '.join(UPDATABLE_ATTRIBUTES)}.")
    value: Any = Field(None, description="The new value (not for remove).")

    @model_validator(mode="after")
    def _check_value(self) -> ImagePatchOperation:
        attribute = self.attribute
        if attribute not in UPDATABLE_ATTRIBUTES:
            raise PydanticCustomError(
                "IMG.0001",
                f"'{self.path}' is not an attribute of a data image that can be changed: use one of "
                + ", ".join(f"/{name}" for name in UPDATABLE_ATTRIBUTES)
                + ".",
            )
        if self.op == "remove":
            if attribute not in _REMOVABLE:
                raise PydanticCustomError("IMG.0001", f"'{self.path}' cannot be removed, only replaced.")
            return self
        self.value = _checked_value(attribute, self.value)
        return self

    @property
    def attribute(self) -> str:
        return self.path.removeprefix("/")

    @property
    def stored_value(self) -> Any:
        return _REMOVABLE[self.attribute] if self.op == "remove" else self.value


class DeleteImageRequest(BaseModel):
    """The optional body of `DELETE /v2/images/{image_id}`."""

    delete_backup: bool = Field(False, description="Also delete the image's CSBS backup: data images have none.")


def update_image(
    image_id: str, project_id: str, operations: list[ImagePatchOperation], images: ImageStore
) -> dict[str, Any]:
    """Apply the patch to an active image, as one conditional write; the whole record as IMS answers it."""
    for _ in range(_ATTEMPTS):
        image = images.existing(image_id, project_id)
        if image.status != "active":
            raise ImageUnavailableError(f"Image {image_id} is {image.status}; only an active image can be updated.")
        changes = {_STORED_AS[operation.attribute]: operation.stored_value for operation in operations}
        if images.update_if_unchanged(image, **changes):
            return images.existing(image_id, project_id).to_wire()
    raise ServiceUnavailableError(f"Image {image_id} kept changing while it was updated; retry.")


def delete_image(image_id: str, project_id: str, stores: Stores) -> None:
    """Delete the image's snapshot, then the image: it leaves every listing and frees its place in the quota."""
    images = stores.images
    image = images.existing(image_id, project_id)
    if image.status in ("queued", "saving"):
        raise ImageBusyError(f"Image {image_id} is {image.status}: delete it once its import has ended.")
    if image.snapshot_id:
        # First the snapshot (deleting one that is gone is fine): a failure here leaves the image as it was, so the
        # caller's retry deletes both, and no snapshot outlives its image.
        stores.snapshots.delete(image.snapshot_id)
    if not images.mark_deleted(image):
        # A concurrent delete of the same image won.
        raise NotFoundError(f"Image {image_id} does not exist.")


def _checked_value(attribute: str, value: Any) -> Any:
    if attribute == "name":
        return check_image_name(value)
    if attribute == "__description":
        return check_description(value)
    if attribute == "enterprise_project_id":
        return check_enterprise_project_id(value)
    # min_ram and max_ram: a whole number of MB, which the SDK sends as a string (the patch's value is a string).
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise PydanticCustomError("IMG.0055", f"{attribute} must be a whole number of MB.")
    return int(value) if attribute == "min_ram" else str(value)
