"""Image records: what an imported data disk image is, and the Images table (the only code touching it).

Records follow IMS's image schema (ims-api.md §5). Status runs `queued` → `saving` → `active`, or ends
`killed` when the import fails.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diskport import aws
from diskport.jobs import _plain, now_iso
from diskport.settings import get_settings

PROJECT_INDEX = "by-project"
ImageStatus = Literal["queued", "saving", "active", "killed", "deleted"]


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


class ImageStore:
    """The Images table, keyed by image id, indexed by project (`owner`) and creation time."""

    def __init__(self, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.dynamodb_table(get_settings().images_table)

    def put(self, image: ImageRecord) -> None:
        self._table.put_item(Item=image.model_dump(by_alias=True, exclude_none=True))

    def get(self, image_id: str, project_id: str) -> ImageRecord | None:
        item = self._table.get_item(Key={"id": image_id}, ConsistentRead=True).get("Item")
        if not item or item.get("owner") != project_id:
            return None
        return ImageRecord.model_validate(_plain(item))

    def update(self, image_id: str, **fields: Any) -> None:
        """Set fields (by their IMS names or model names) of an existing image, and its `updated_at`."""
        wire_names = {name: (info.alias or name) for name, info in ImageRecord.model_fields.items()}
        assignments = {wire_names.get(name, name): value for name, value in fields.items()}
        assignments["updated_at"] = now_iso()
        names = {f"#f{index}": name for index, name in enumerate(assignments)}
        values = {f":v{index}": value for index, value in enumerate(assignments.values())}
        self._table.update_item(
            Key={"id": image_id},
            UpdateExpression="SET " + ", ".join(f"#f{index} = :v{index}" for index in range(len(assignments))),
            ConditionExpression="attribute_exists(id)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def list_for_project(self, project_id: str) -> list[ImageRecord]:
        """Every image of a project, oldest first."""
        images: list[ImageRecord] = []
        query: dict[str, Any] = {
            "IndexName": PROJECT_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":owner": project_id},
        }
        while True:
            page = self._table.query(**query)
            images.extend(ImageRecord.model_validate(_plain(item)) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return images
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
