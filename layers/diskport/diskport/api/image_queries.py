"""IMS "Querying Images" (`GET /v2/cloudimages`): the caller's images, filtered, sorted and paged by marker.

Every filter `querying_images.rst` documents applies, and those the official SDK sends besides (`flavor_id`,
`architecture`); each compares with the record as it is answered, so a filter on a value a data image never has
(`virtual_env_type=FusionCompute`, `__support_kvm=true`) matches nothing. A parameter the document does not list is
refused with IMG.0001 naming it, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from diskport.errors import RequestRejectedError
from diskport.stores.images import ImageRecord, ImageStore

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
PATH = "/v2/cloudimages"

# Filters compared as text with the record's attribute of the same name; an attribute the record lacks never matches.
TEXT_FILTERS: dict[str, str] = {
    "id": "Only the image with this id.",
    "name": "Only images with this name (exact match).",
    "status": "queued, saving, active or killed (deleted images are never listed).",
    "visibility": "private for imported images.",
    "owner": "The project the images belong to.",
    "container_format": "bare for imported images.",
    "disk_format": "raw: the image is kept as a snapshot of raw blocks.",
    "virtual_env_type": "DataImage for imported data disk images.",
    "__imagetype": "private for imported images (gold and shared match nothing).",
    "__isregistered": "true for every image listed.",
    "__os_type": "Linux or Windows, as the import named it.",
    "__os_bit": "64 for data disk images.",
    "__platform": "Other for data disk images.",
    "__system__cmkid": "Only images encrypted with this KMS key.",
    "member_status": "For shared images: a data image imported here is never shared, so this matches nothing.",
    "flavor_id": "Images an ECS flavor can boot: a data disk image boots nothing, so this matches nothing.",
    "architecture": "x86 or arm, for system disk images: a data disk image has none, so this matches nothing.",
    "__support_kvm": "ECS feature of system disk images: matches nothing.",
    "__support_xen": "ECS feature of system disk images: matches nothing.",
    "__support_largememory": "ECS feature of system disk images: matches nothing.",
    "__support_diskintensive": "ECS feature of system disk images: matches nothing.",
    "__support_highperformance": "ECS feature of system disk images: matches nothing.",
    "__support_xen_gpu_type": "ECS feature of system disk images: matches nothing.",
    "__support_kvm_gpu_type": "ECS feature of system disk images: matches nothing.",
    "__support_xen_hana": "ECS feature of system disk images: matches nothing.",
    "__support_kvm_infiniband": "ECS feature of system disk images: matches nothing.",
}
BOOLEAN_FILTERS: dict[str, str] = {
    "protected": "true or false; imported images are not protected.",
    "__whole_image": "true or false; a data disk image is not a full-ECS image.",
}
INTEGER_FILTERS: dict[str, str] = {
    "min_disk": "Only images with this minimum disk size (GB).",
    "min_ram": "Only images with this minimum memory (MB).",
}
TIME_FILTERS: dict[str, str] = {
    "created_at": "operator:time, the operator gt, gte, lt, lte, eq or neq; time yyyy-MM-ddThh:mm:ssZ.",
    "updated_at": "operator:time, the operator gt, gte, lt, lte, eq or neq; time yyyy-MM-ddThh:mm:ssZ.",
}
OTHER_PARAMETERS: dict[str, str] = {
    "tag": "key=value: only images with this tag (key alone: any value); repeated, images with every one.",
    "enterprise_project_id": "0 (the default project), a UUID, or all_granted_eps for every enterprise project.",
    "sort_key": "name, container_format, disk_format, status, id, size or created_at (default).",
    "sort_dir": "asc or desc (default).",
    "limit": f"Images per page, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
    "marker": "The id of the last image of the previous page.",
}
PARAMETERS = {**TEXT_FILTERS, **BOOLEAN_FILTERS, **INTEGER_FILTERS, **TIME_FILTERS, **OTHER_PARAMETERS}

SortKey = Literal["name", "container_format", "disk_format", "status", "id", "size", "created_at"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "container_format", "disk_format", "status", "id", "size", "created_at")
_TIME_OPERATORS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda value, bound: value > bound,
    "gte": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "lte": lambda value, bound: value <= bound,
    "eq": lambda value, bound: value == bound,
    "neq": lambda value, bound: value != bound,
}
_ALL_ENTERPRISE_PROJECTS = "all_granted_eps"


@dataclass(frozen=True)
class TimeCondition:
    attribute: str
    operator: str
    bound: datetime

    def holds(self, record: dict[str, Any]) -> bool:
        value = record.get(self.attribute)
        return isinstance(value, str) and _TIME_OPERATORS[self.operator](_to_the_second(value), self.bound)


@dataclass(frozen=True)
class ImageQuery:
    """One `GET /v2/cloudimages` request: its filters, order and page."""

    equal_to: dict[str, Any] = field(default_factory=dict)
    times: list[TimeCondition] = field(default_factory=list)
    tags: list[tuple[str, str | None]] = field(default_factory=list)
    enterprise_project_id: str | None = None
    sort_key: SortKey = "created_at"
    sort_descending: bool = True
    limit: int = DEFAULT_LIMIT
    marker: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> ImageQuery:
        """The query the parameters ask for; RequestRejectedError (IMG.0001) naming any parameter IMS does not
        document, or a value that cannot be read."""
        unknown = sorted(name for name in parameters if name not in PARAMETERS)
        if unknown:
            raise RequestRejectedError(
                "IMG.0001",
                f"Unknown query parameter(s) {', '.join(repr(name) for name in unknown)}: "
                f"GET {PATH} takes only the filters IMS documents ({', '.join(sorted(PARAMETERS))}).",
            )
        equal_to: dict[str, Any] = {}
        for name, value in parameters.items():
            if name in TEXT_FILTERS:
                equal_to[name] = value
            elif name in BOOLEAN_FILTERS:
                equal_to[name] = _boolean(name, value)
            elif name in INTEGER_FILTERS:
                equal_to[name] = _integer(name, value)
        sort_key = parameters.get("sort_key", "created_at")
        if sort_key not in SORT_KEYS:
            raise RequestRejectedError("IMG.0001", f"sort_key must be one of {', '.join(SORT_KEYS)}, not '{sort_key}'.")
        sort_dir = parameters.get("sort_dir", "desc")
        if sort_dir not in ("asc", "desc"):
            raise RequestRejectedError("IMG.0001", f"sort_dir must be asc or desc, not '{sort_dir}'.")
        limit = _integer("limit", parameters.get("limit", str(DEFAULT_LIMIT)))
        if not 1 <= limit <= MAX_LIMIT:
            raise RequestRejectedError("IMG.0001", f"limit must be from 1 to {MAX_LIMIT}, not {limit}.")
        marker = parameters.get("marker")
        for name in ("id", "marker"):
            if parameters.get(name) == "":
                raise RequestRejectedError("IMG.0001", f"{name} must be an image id, not empty.")
        tags: list[tuple[str, str | None]] = []
        if "tag" in parameters:
            # API Gateway joins a repeated `tag` with commas, which no tag key or value holds: each must match.
            for condition in parameters["tag"].split(","):
                key, equals, value = condition.partition("=")
                tags.append((key, value if equals else None))
        return cls(
            equal_to=equal_to,
            times=[condition for name in TIME_FILTERS if name in parameters for condition in _times(name, parameters)],
            tags=tags,
            enterprise_project_id=parameters.get("enterprise_project_id"),
            sort_key=sort_key,
            sort_descending=sort_dir == "desc",
            limit=limit,
            marker=marker,
            parameters=dict(parameters),
        )

    def matches(self, image: ImageRecord) -> bool:
        record = image.to_wire()
        for name, wanted in self.equal_to.items():
            if name == "__whole_image":
                if wanted:  # an imported data disk image is never a full-ECS image
                    return False
            elif record.get(name) != wanted:
                return False
        for key, value in self.tags:
            if not any(key == tag_key and value in (None, tag_value) for tag_key, tag_value in image.tag_pairs):
                return False
        epid = self.enterprise_project_id
        if epid is not None and epid != _ALL_ENTERPRISE_PROJECTS and record["enterprise_project_id"] != epid:
            return False
        return all(condition.holds(record) for condition in self.times)

    def order(self, image: ImageRecord) -> tuple[Any, ...]:
        """The sort position: the sort key, then creation time and id, so pages never overlap."""
        if self.sort_key == "size":
            # IMS answers size as unavailable (0); images sort by what it stands for, the disk's byte size.
            primary: Any = image.virtual_size or 0
        else:
            primary = image.to_wire()[self.sort_key]
        return (primary, image.created_at, image.id)


class ImageList(BaseModel):
    """`{"images": [...]}`, and `next` (the link to the following page) when more images match."""

    images: list[dict[str, Any]] = Field(description="Image records as IMS returns them (`__os_type`, ...).")
    next: str | None = Field(default=None, description="The link to the next page; absent on the last page.")

    @model_serializer(mode="wrap")
    def _without_absent_next(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Glance and IMS leave `next` out on the last page rather than sending null.
        body: dict[str, Any] = serialize(self)
        if body.get("next") is None:
            body.pop("next", None)
        return body


def list_images(project_id: str, query: ImageQuery, images: ImageStore) -> ImageList:
    """The project's images matching the query, in its order, at most `limit` after the image `marker`."""
    if "id" in query.equal_to and query.marker is None:
        # Terraform reads every image this way (`?id=`): one item read, not the project's whole list.
        image = images.get(str(query.equal_to["id"]), project_id)
        found = [image] if image is not None and image.status != "deleted" and query.matches(image) else []
        return ImageList(images=[image.to_wire() for image in found])
    matching = sorted(
        (image for image in images.for_project(project_id) if query.matches(image)),
        key=query.order,
        reverse=query.sort_descending,
    )
    if query.marker is not None:
        after = images.existing(query.marker, project_id)
        position = query.order(after)
        matching = [
            image
            for image in matching
            if (query.order(image) < position if query.sort_descending else query.order(image) > position)
        ]
    page = matching[: query.limit]
    body = ImageList(images=[image.to_wire() for image in page])
    if len(matching) > query.limit:
        following = {**query.parameters, "limit": str(query.limit), "marker": page[-1].id}
        body.next = f"{PATH}?{urlencode(following)}"
    return body


def query_parameters_openapi() -> list[dict[str, Any]]:
    """The query parameters of `GET /v2/cloudimages` as OpenAPI describes them."""
    schema_of = {name: {"type": "boolean"} for name in BOOLEAN_FILTERS} | {
        name: {"type": "integer"} for name in (*INTEGER_FILTERS, "limit")
    }
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema_of.get(name, {"type": "string"}),
        }
        for name, description in PARAMETERS.items()
    ]


def _boolean(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise RequestRejectedError("IMG.0001", f"{name} must be true or false, not '{value}'.")
    return value.lower() == "true"


def _integer(name: str, value: str) -> int:
    if not value.strip().lstrip("-").isdigit():
        raise RequestRejectedError("IMG.0001", f"{name} must be a whole number, not '{value}'.")
    return int(value)


def _times(name: str, parameters: Mapping[str, str]) -> list[TimeCondition]:
    # API Gateway joins a repeated parameter with commas: created_at=gt:...&created_at=lt:... holds both.
    conditions = []
    for condition in parameters[name].split(","):
        operator, _, time = condition.partition(":")
        if operator not in _TIME_OPERATORS or not time:
            raise RequestRejectedError(
                "IMG.0001", f"{name} must be operator:time with an operator of {', '.join(_TIME_OPERATORS)}."
            )
        conditions.append(TimeCondition(name, operator, _parse_time(name, time)))
    return conditions


def _parse_time(name: str, text: str) -> datetime:
    """IMS's two time formats, `yyyy-MM-ddThh:mm:ssZ` and `yyyy-MM-dd hh:mm:ss` (UTC), to the second."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise RequestRejectedError(
            "IMG.0001", f"{name}: '{text}' is not a time of the form yyyy-MM-ddThh:mm:ssZ or yyyy-MM-dd hh:mm:ss."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def _to_the_second(timestamp: str) -> datetime:
    return _parse_time("time", timestamp)
