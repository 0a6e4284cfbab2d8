"""Image records: what an imported data disk image is, and the Images table (the only code touching it).

Records follow IMS's image schema (ims-api.md §5). Status runs `queued` → `saving` → `active`, or ends
`killed` when the import fails.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from diskport.errors import ImageQuotaError, NotFoundError
from diskport.settings import get_settings
from diskport.stores import aws, aws_errors
from diskport.stores.items import now_iso, plain, set_attributes
from diskport.stores.project_counters import decrement, increment_below

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


# The IMS attributes a user may change with PATCH /v2/cloudimages/{image_id} (updating_an_image.rst) that mean
# something for a data disk image, by their IMS names. The rest of that page's list describes how an ECS boots.
UPDATABLE_ATTRIBUTES = ("name", "__description", "enterprise_project_id", "min_ram", "max_ram")
# What a data disk image imported from a file answers for the IMS attributes that describe a system disk.
DATA_IMAGE_PLATFORM = "Other"
DATA_IMAGE_OS_BIT = "64"
# The image is kept as an EBS snapshot: raw blocks, whatever format the file was in (diskport_source_format).
STORED_DISK_FORMAT = "raw"
# Our own facts in the record, beside IMS's attributes: named so no IMS client mistakes them for IMS's.
EXTENSION_PREFIX = "diskport_"


class ImageRecord(BaseModel):
    """One image as the Images table stores it; `to_wire` is the record `GET /v2/cloudimages` answers."""

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
    min_disk: int
    min_ram: int = 0
    max_ram: str | None = None
    image_size: str = Field("0", alias="__image_size")
    data_origin: str = Field(alias="__data_origin")
    cmk_id: str | None = Field(None, alias="__system__cmkid")
    enterprise_project_id: str = "0"
    tags: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    active_at: str | None = None
    # The snapshot's EBS LINEAR aggregate checksum: not IMS's `checksum` (an MD5 of the image file in Glance).
    checksum: str = ""
    # The virtual disk's size in bytes, once active.
    size: int = 0
    protected: bool = False
    owner: str = Field(description="The project the image belongs to.")
    # diskport's own fields: where the data lives and what the file held.
    snapshot_id: str | None = None
    source_format: str | None = None
    virtual_size: int | None = None
    job_id: str | None = None

    @property
    def tag_pairs(self) -> list[tuple[str, str]]:
        """The tags as (key, value): stored as IMS's "key.value", split at the first dot (keys hold no dots)."""
        return [(key, value) for key, _, value in (tag.partition(".") for tag in self.tags)]

    def to_wire(self) -> dict[str, Any]:
        """The record as IMS answers it (querying_images.rst, Table 2), decodable by the Python and Go SDKs.

        `size` and `virtual_size` are 0 and null as IMS documents them ("unavailable"): the Go SDK reads both as
        32-bit integers, which a disk over 2 GiB would overflow. The byte sizes are in the extension fields.
        """
        record: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "__description": self.description,
            "status": self.status,
            "visibility": self.visibility,
            "__imagetype": self.imagetype,
            "virtual_env_type": self.virtual_env_type,
            "__image_source_type": self.image_source_type,
            "__os_type": self.os_type,
            "__os_bit": DATA_IMAGE_OS_BIT,
            "__os_version": f"Other {self.os_type}({DATA_IMAGE_OS_BIT} bit)",
            "__platform": DATA_IMAGE_PLATFORM,
            "__isregistered": "true",
            "__lazyloading": "false",
            "__root_origin": "file",
            "__data_origin": self.data_origin,
            "__originalimagename": "",
            "__backup_id": "",
            "__image_size": self.image_size,
            "disk_format": STORED_DISK_FORMAT,
            "container_format": "bare",
            "min_disk": self.min_disk,
            "min_ram": self.min_ram,
            "enterprise_project_id": self.enterprise_project_id,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "checksum": "",
            "size": 0,
            "virtual_size": None,
            "protected": self.protected,
            "owner": self.owner,
            "file": f"/v2/images/{self.id}/file",
            "self": f"/v2/images/{self.id}",
            "schema": "/v2/schemas/image",
        }
        if self.active_at is not None:
            record["active_at"] = self.active_at
        if self.cmk_id is not None:
            record["__system__cmkid"] = self.cmk_id
        if self.max_ram is not None:
            record["max_ram"] = self.max_ram
        extensions = {
            "snapshot_id": self.snapshot_id,
            "source_format": self.source_format,
            "virtual_size_bytes": self.virtual_size,
            "snapshot_checksum": self.checksum or None,
            "job_id": self.job_id,
        }
        record.update({EXTENSION_PREFIX + name: value for name, value in extensions.items() if value is not None})
        return record


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
            if aws_errors.cancelled_by_condition(error, 0):
                existing = self.get(image.id, image.owner)
                if existing is None:
                    raise
                return existing
            if aws_errors.cancelled_by_condition(error, 1):
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
            if aws_errors.cancelled_by_condition(error, 0):
                return False
            raise
        return True

    def get(self, image_id: str, project_id: str) -> ImageRecord | None:
        item = self._table.get_item(Key={"id": image_id}, ConsistentRead=True).get("Item")
        if not item or item.get("owner") != project_id:
            return None
        return ImageRecord.model_validate(plain(item))

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
            **set_attributes(assignments),
        }

    def for_project(self, project_id: str) -> list[ImageRecord]:
        """Every image of the project that has not been deleted, newest first."""
        query: dict[str, Any] = {
            "IndexName": PROJECT_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "FilterExpression": "#status <> :deleted",
            "ExpressionAttributeNames": {"#owner": "owner", "#status": "status"},
            "ExpressionAttributeValues": {":owner": project_id, ":deleted": "deleted"},
            "ScanIndexForward": False,
        }
        images: list[ImageRecord] = []
        while True:
            page = self._table.query(**query)
            images.extend(ImageRecord.model_validate(plain(item)) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return images
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def existing(self, image_id: str, project_id: str) -> ImageRecord:
        """The project's image, unless deleted; NotFoundError otherwise, whoever's it is."""
        image = self.get(image_id, project_id)
        if image is None or image.status == "deleted":
            raise NotFoundError(f"Image {image_id} does not exist.")
        return image

    def images_counted(self, project_id: str) -> int:
        """How many of the project's images count against its quota (the Projects table's counter)."""
        item = self._projects.get_item(Key={"project_id": project_id}, ConsistentRead=True).get("Item") or {}
        return int(item.get(IMAGES_COUNTED, 0))

    def update_if_unchanged(self, image: ImageRecord, **fields: Any) -> bool:
        """Set fields of an active image that nobody changed since `image` was read; False when it was changed,
        or is no longer active (the caller reads it again, or refuses)."""
        request = self._update_request(image.id, fields)
        request["ConditionExpression"] = "attribute_exists(id) AND #status = :active AND #read_at = :read_at"
        request["ExpressionAttributeNames"].update({"#status": "status", "#read_at": "updated_at"})
        request["ExpressionAttributeValues"].update({":active": "active", ":read_at": image.updated_at})
        try:
            self._table.update_item(**request)
        except ClientError as error:
            if aws_errors.is_condition_failed(error):
                return False
            raise
        return True

    def mark_deleted(self, image: ImageRecord) -> bool:
        """Mark an `active` or `killed` image `deleted`: it leaves every listing, and an active one gives its place in
        the project's quota back in the same transaction. False when it was not in the status read (deleted already,
        or changed meanwhile)."""
        delete_image = {**self._update_request(image.id, {"status": "deleted"}), "TableName": self._table.name}
        delete_image["ConditionExpression"] = "attribute_exists(id) AND #status = :read_status"
        delete_image["ExpressionAttributeNames"]["#status"] = "status"
        delete_image["ExpressionAttributeValues"][":read_status"] = image.status
        items: list[dict[str, Any]] = [{"Update": delete_image}]
        if image.status in COUNTED_STATUSES:
            items.append(decrement(self._projects.name, image.owner, IMAGES_COUNTED))
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if aws_errors.cancelled_by_condition(error, 0):
                return False
            raise
        return True
