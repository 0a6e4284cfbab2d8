"""Image records: what an imported data disk image is, and the Images table (the only code touching it).

Records follow IMS's image schema (ims-api.md §5). Status runs `queued` → `saving` → `active`, or ends
`killed` when the import fails.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from diskport import aws
from diskport.errors import ImageQuotaError, NotFoundError
from diskport.jobs import _plain, now_iso
from diskport.project_counters import decrement, increment_below
from diskport.settings import get_settings

PROJECT_INDEX = "by-project"
ImageStatus = Literal["queued", "saving", "active", "killed", "deleted"]
# Images that count against a project's quota of private images: all but the failed and the deleted.
COUNTED_STATUSES: tuple[ImageStatus, ...] = ("queued", "saving", "active")
# The Projects table's count of each project's images in COUNTED_STATUSES (project_counters.py).
IMAGES_COUNTED = "images_counted"
# The image ids of imports are derived from their job ids, so a re-run step finds the record it made.
_IMAGE_ID_NAMESPACE = uuid.UUID("5f0c7d1e-8a43-4b6e-9a57-1d2f3c4b5a69")


def image_id_for_job(job_id: str) -> str:
    return str(uuid.uuid5(_IMAGE_ID_NAMESPACE, job_id))


class ImageRecord(BaseModel):
    """One image, as `GET /v2/cloudimages` answers it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    name: str
    description: str = ""
    status: ImageStatus = "queued"
    visibility: str = "private"
    imagetype: str = Field("private", alias="__imagetype")
    virtual_env_type: str = "DataImage"
    image_source_type: str = Field("uds", alias="__image_source_type")
    os_type: str = Field("Linux", alias="__os_type")
    disk_format: str = ""
    min_disk: int
    min_ram: int = 0
    image_size: str = Field("0", alias="__image_size")
    data_origin: str = Field(alias="__data_origin")
    cmk_id: str | None = Field(None, alias="__system__cmkid")
    tags: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    active_at: str | None = None
    checksum: str = ""
    size: int = 0
    protected: bool = False
    owner: str = Field(description="The project the image belongs to.")
    # diskport's own fields: where the data lives and what the file held.
    snapshot_id: str | None = None
    source_format: str | None = None
    virtual_size: int | None = None
    job_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The record with IMS's attribute names (`__os_type`, ...), without unset optional fields."""
        return {key: value for key, value in self.model_dump(by_alias=True).items() if value is not None}


class ImageFilters(BaseModel):
    """The filters of IMS "Querying Images" this service answers; unset filters match every image."""

    model_config = ConfigDict(populate_by_name=True)

    id: str | None = None
    name: str | None = None
    status: str | None = None
    imagetype: str | None = Field(None, alias="__imagetype")

    def matches(self, image: ImageRecord) -> bool:
        return (
            (self.id is None or image.id == self.id)
            and (self.name is None or image.name == self.name)
            and (self.status is None or image.status == self.status)
            and (self.imagetype is None or image.imagetype == self.imagetype)
        )


class ImagePage(BaseModel):
    images: list[ImageRecord]
    next_marker: str | None = None


class ImageStore:
    """The Images table, keyed by image id, indexed by project (`owner`) and creation time."""

    def __init__(self, table: Any | None = None, projects_table: Any | None = None) -> None:
        settings = get_settings()
        self._table = table if table is not None else aws.dynamodb_table(settings.images_table)
        # The Projects table counts each project's images in COUNTED_STATUSES, changed in the transaction that
        # creates or kills one, so concurrent imports cannot go past the quota between a count and a write.
        self._projects = projects_table if projects_table is not None else aws.dynamodb_table(settings.projects_table)

    def create_or_get(self, image: ImageRecord, *, quota: int) -> ImageRecord:
        """Store a new `queued` image, counted against its project's quota of `quota` images in the same transaction;
        when one with its id exists (a re-run step), answer that one unchanged. ImageQuotaError when the project
        already has `quota` images that count."""
        put_image = {
            "Put": {
                "TableName": self._table.name,
                "Item": image.model_dump(by_alias=True, exclude_none=True),
                "ConditionExpression": "attribute_not_exists(id)",
            }
        }
        count_image = increment_below(self._projects.name, image.owner, IMAGES_COUNTED, quota)
        try:
            self._table.meta.client.transact_write_items(TransactItems=[put_image, count_image])
        except ClientError as error:
            if aws.cancelled_by_condition(error, 0):
                existing = self.get(image.id, image.owner)
                if existing is None:
                    raise
                return existing
            if aws.cancelled_by_condition(error, 1):
                raise ImageQuotaError(
                    f"The project has reached its quota of {quota} private images: delete an image, then import again."
                ) from error
            raise
        return image

    def kill(self, image: ImageRecord) -> bool:
        """Mark an image `killed`, giving its place in the project's quota back; False when it no longer counted."""
        counted = {f":counted{index}": status for index, status in enumerate(COUNTED_STATUSES)}
        kill_image = {**self._update_request(image.id, {"status": "killed"}), "TableName": self._table.name}
        kill_image["ConditionExpression"] = f"attribute_exists(id) AND #status IN ({', '.join(counted)})"
        kill_image["ExpressionAttributeNames"]["#status"] = "status"
        kill_image["ExpressionAttributeValues"].update(counted)
        uncount_image = decrement(self._projects.name, image.owner, IMAGES_COUNTED)
        try:
            self._table.meta.client.transact_write_items(TransactItems=[{"Update": kill_image}, uncount_image])
        except ClientError as error:
            if aws.cancelled_by_condition(error, 0):
                return False
            raise
        return True

    def get(self, image_id: str, project_id: str) -> ImageRecord | None:
        item = self._table.get_item(Key={"id": image_id}, ConsistentRead=True).get("Item")
        if not item or item.get("owner") != project_id:
            return None
        return ImageRecord.model_validate(_plain(item))

    def update(self, image_id: str, **fields: Any) -> None:
        """Set fields (by their IMS names or model names) of an existing image, and its `updated_at`."""
        self._table.update_item(**self._update_request(image_id, fields))

    def activation(self, image_id: str, *, checksum: str, size: int) -> dict[str, Any]:
        """The transaction item that makes an existing image active, for `JobStore.mark_succeeded`."""
        fields = {"status": "active", "active_at": now_iso(), "checksum": checksum, "size": size}
        return {"Update": {**self._update_request(image_id, fields), "TableName": self._table.name}}

    @staticmethod
    def _update_request(image_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        wire_names = {name: (info.alias or name) for name, info in ImageRecord.model_fields.items()}
        assignments = {wire_names.get(name, name): value for name, value in fields.items()}
        assignments["updated_at"] = now_iso()
        return {
            "Key": {"id": image_id},
            "ConditionExpression": "attribute_exists(id)",
            **aws.set_attributes(assignments),
        }

    def page_for_project(
        self, project_id: str, filters: ImageFilters, *, limit: int, marker: str | None = None
    ) -> ImagePage:
        """Up to `limit` of the project's images matching the filters, newest first, after the image `marker`."""
        if filters.id is not None:
            image = self.get(filters.id, project_id)
            return ImagePage(images=[image] if image is not None and filters.matches(image) and marker is None else [])
        query: dict[str, Any] = {
            "IndexName": PROJECT_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":owner": project_id},
            "ScanIndexForward": False,
        }
        if marker is not None:
            after = self.get(marker, project_id)
            if after is None:
                raise NotFoundError(f"The marker {marker} is not an image of this project.")
            query["ExclusiveStartKey"] = {"id": after.id, "owner": project_id, "created_at": after.created_at}
        images: list[ImageRecord] = []
        while True:
            page = self._table.query(**query)
            for item in page["Items"]:
                image = ImageRecord.model_validate(_plain(item))
                if not filters.matches(image):
                    continue
                if len(images) == limit:
                    return ImagePage(images=images, next_marker=images[-1].id)
                images.append(image)
            if "LastEvaluatedKey" not in page:
                return ImagePage(images=images)
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
