"""The IMS request rules: the create call's body as a pydantic model, and the checks other calls share.

Each rule of "Create a data disk image" (ims-api.md §1) is a validator that fails with the rule's IMS code
as the pydantic error type, so `ims_code_of` can turn any validation failure into the one IMS error a
client expects. The same model produces the OpenAPI document's request schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from diskport.errors import IMS_MESSAGES, RequestRejectedError

NAME_MAX_LENGTH = 128
DESCRIPTION_MAX_LENGTH = 1024
MIN_DISK_GB = 40
MAX_DISK_GB = 2048
MAX_TAGS = 10
TAG_KEY_MAX_LENGTH = 36
TAG_VALUE_MAX_LENGTH = 43
OBJECT_KEY_MAX_BYTES = 1024
OVA_DISK_MAX_LENGTH = 255

# image_tag_format.rst: keys hold letters, digits, '_', '-' and CJK letters; values also '.' (in `tags`, the text
# after the first dot is the value, so "os.version.1.2" is key "os", value "version.1.2").
_TAG_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_\-\u4e00-\u9fff]+")
_TAG_VALUE_CHARACTERS = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]*")
_ENTERPRISE_PROJECT_ID = re.compile(r"0|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BUCKET_CHARACTERS = re.compile(r"[a-z0-9.-]+")
_BUCKET_SHAPE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
_KMS_KEY_ID = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/|alias/))?"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|(?<=alias/)[A-Za-z0-9/_-]{1,250})"
)
_KMS_ALIAS = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")

# The code for a field that is absent, or of the wrong JSON type, before any of its own rules runs.
_CODE_WHEN_MISSING_OR_MISTYPED = {
    "name": ("IMG.0013", "IMG.0003"),
    "description": ("IMG.0054", "IMG.0054"),
    "os_type": ("IMG.0122", "IMG.0122"),
    "image_url": ("IMG.0017", "IMG.0017"),
    "min_disk": ("IMG.0055", "IMG.0055"),
    "cmk_id": ("IMG.0095", "IMG.0095"),
    "tags": ("IMG.0115", "IMG.0115"),
    "image_tags": ("IMG.0115", "IMG.0115"),
    "enterprise_project_id": ("IMG.0001", "IMG.0001"),
    "ova_disk": ("IMG.0017", "IMG.0017"),
}


def _reject(code: str, reason: str) -> PydanticCustomError:
    return PydanticCustomError(code, reason)


class ImageTag(BaseModel):
    """One `{"key": ..., "value": ...}` of `image_tags`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str
    value: str = ""


class CreateDataImageRequest(BaseModel):
    """Body of `POST /v1/cloudimages/dataimages/action`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    # json_schema_extra documents each rule in the OpenAPI document; the validators below enforce them.
    name: str = Field(
        description="Image name: 1-128 letters, digits, '-', '_', '.', spaces inside.",
        json_schema_extra={"minLength": 1, "maxLength": NAME_MAX_LENGTH},
    )
    description: str | None = Field(
        None,
        description="At most 1024 characters; no CR, LF, '<' or '>'.",
        json_schema_extra={"maxLength": DESCRIPTION_MAX_LENGTH},
    )
    os_type: Literal["Windows", "Linux"] | None = Field(None, description="Windows or Linux (default Linux).")
    image_url: str = Field(
        description="The source file as 'bucket:object'.",
        json_schema_extra={"pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]:[^ ]*[^ /]$"},
    )
    min_disk: Annotated[int, Field(strict=True)] = Field(
        description="Minimum data disk size in GB, 40-2048.",
        json_schema_extra={"minimum": MIN_DISK_GB, "maximum": MAX_DISK_GB},
    )
    cmk_id: str | None = Field(None, description="KMS key id, key ARN or alias that encrypts the image.")
    tags: list[str] | None = Field(
        None,
        description="Tags as 'key.value' strings (use tags or image_tags).",
        json_schema_extra={"maxItems": MAX_TAGS},
    )
    image_tags: list[ImageTag] | None = Field(
        None,
        description="Tags as key/value objects; spaces around keys and values are trimmed.",
        json_schema_extra={"maxItems": MAX_TAGS},
    )
    enterprise_project_id: str | None = Field(
        None, description="The enterprise project of the image: '0' (default) or a UUID."
    )
    ova_disk: str | None = Field(
        None,
        description="diskport extension, not in IMS: when image_url is an OVA holding several disks, the one to "
        "import, by its OVF disk id (vmdisk2) or file name (disk2.vmdk).",
        json_schema_extra={"minLength": 1, "maxLength": OVA_DISK_MAX_LENGTH},
    )

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, name: Any) -> Any:
        return check_image_name(name)

    @field_validator("description", mode="before")
    @classmethod
    def _check_description(cls, description: Any) -> Any:
        return None if description is None else check_description(description)

    @field_validator("os_type", mode="before")
    @classmethod
    def _check_os_type(cls, os_type: Any) -> Any:
        if os_type is not None and os_type not in ("Windows", "Linux"):
            raise _reject("IMG.0122", "os_type must be 'Windows' or 'Linux'.")
        return os_type

    @field_validator("image_url", mode="before")
    @classmethod
    def _check_image_url(cls, image_url: Any) -> Any:
        if not isinstance(image_url, str) or ":" not in image_url:
            raise _reject("IMG.0017", "image_url must be 'bucket:object', for example 'images:disks/data1.qcow2'.")
        bucket, _, key = image_url.partition(":")
        if bucket == "":
            raise _reject("IMG.0068", "image_url names no bucket before the ':'.")
        if not _BUCKET_CHARACTERS.fullmatch(bucket):
            raise _reject(
                "IMG.0109", f"The bucket name '{bucket}' may hold only lowercase letters, digits, '.' and '-'."
            )
        if not _BUCKET_SHAPE.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
            raise _reject(
                "IMG.0109",
                f"The bucket name '{bucket}' must be 3-63 characters, start and end with a letter or digit, "
                "and not look like an IP address.",
            )
        if key == "" or key.endswith("/"):
            raise _reject("IMG.0017", "image_url names no object after the bucket: use 'bucket:object'.")
        if " " in key:
            raise _reject("IMG.0175", "The folder and file names in image_url must not contain spaces.")
        if len(key.encode("utf-8")) > OBJECT_KEY_MAX_BYTES or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
            raise _reject("IMG.0017", "The object key in image_url is longer than 1024 bytes or holds control codes.")
        return image_url

    @field_validator("ova_disk", mode="before")
    @classmethod
    def _check_ova_disk(cls, ova_disk: Any) -> Any:
        if ova_disk is None:
            return None
        if (
            not isinstance(ova_disk, str)
            or not 1 <= len(ova_disk) <= OVA_DISK_MAX_LENGTH
            or not ova_disk.isprintable()
            or "/" in ova_disk
        ):
            raise _reject("IMG.0017", "ova_disk must name one disk of the OVA: its OVF disk id or its file name.")
        return ova_disk

    @field_validator("min_disk", mode="before")
    @classmethod
    def _check_min_disk(cls, min_disk: Any) -> Any:
        if type(min_disk) is not int or not MIN_DISK_GB <= min_disk <= MAX_DISK_GB:
            raise _reject("IMG.0055", f"min_disk must be a whole number of GB from {MIN_DISK_GB} to {MAX_DISK_GB}.")
        return min_disk

    @field_validator("cmk_id", mode="before")
    @classmethod
    def _check_cmk_id(cls, cmk_id: Any) -> Any:
        if cmk_id is None:
            return None
        if not isinstance(cmk_id, str) or not (_KMS_KEY_ID.fullmatch(cmk_id) or _KMS_ALIAS.fullmatch(cmk_id)):
            raise _reject("IMG.0095", "cmk_id must be a KMS key id, key ARN, alias name or alias ARN.")
        return cmk_id

    @field_validator("tags", mode="before")
    @classmethod
    def _check_tags(cls, tags: Any) -> Any:
        if tags is None:
            return None
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise _reject("IMG.0115", "tags must be a list of 'key.value' strings.")
        for tag in tags:
            key, dot, value = tag.partition(".")
            _check_tag(key, value if dot else "")
        return tags

    @field_validator("image_tags", mode="before")
    @classmethod
    def _check_image_tags(cls, image_tags: Any) -> Any:
        if image_tags is None:
            return None
        return [{"key": key, "value": value} for key, value in trimmed_image_tags(image_tags)]

    @field_validator("enterprise_project_id", mode="before")
    @classmethod
    def _check_enterprise_project_id(cls, enterprise_project_id: Any) -> Any:
        return None if enterprise_project_id is None else check_enterprise_project_id(enterprise_project_id)

    @model_validator(mode="after")
    def _check_tag_set(self) -> CreateDataImageRequest:
        if self.tags is not None and self.image_tags is not None:
            raise _reject("IMG.0115", "Use either tags or image_tags, not both.")
        check_tag_set(self.tag_pairs())
        return self

    def tag_pairs(self) -> list[tuple[str, str]]:
        """The tags as (key, value) pairs, whichever of the two forms the request used."""
        if self.image_tags is not None:
            return [(tag.key, tag.value) for tag in self.image_tags]
        return [(key, value) for key, _, value in (tag.partition(".") for tag in self.tags or [])]

    @property
    def bucket(self) -> str:
        return self.image_url.partition(":")[0]

    @property
    def object_key(self) -> str:
        return self.image_url.partition(":")[2]

    @property
    def effective_os_type(self) -> str:
        return self.os_type or "Linux"


def check_image_name(name: Any) -> str:
    """An image name as IMS allows it (IMG.0013 empty, IMG.0002 too long, IMG.0003 bad format)."""
    if not isinstance(name, str):
        raise _reject("IMG.0003", "The image name must be a string.")
    if name == "":
        raise _reject("IMG.0013", "The image name is empty.")
    if len(name) > NAME_MAX_LENGTH:
        raise _reject("IMG.0002", f"The image name has {len(name)} characters; at most 128 are allowed.")
    if name != name.strip(" ") or not all(ch.isalnum() or ch in "-_. " for ch in name):
        raise _reject(
            "IMG.0003",
            "The image name may hold letters, digits, '-', '_', '.' and spaces, "
            "and must not start or end with a space.",
        )
    return name


def check_description(description: Any) -> str:
    """An image description as IMS allows it (IMG.0004 too long, IMG.0054 bad format)."""
    if not isinstance(description, str):
        raise _reject("IMG.0054", "The description must be a string.")
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise _reject("IMG.0004", f"The description has {len(description)} characters; at most 1024 are allowed.")
    if any(ch in description for ch in "\r\n<>"):
        raise _reject("IMG.0054", "The description must not contain line breaks or angle brackets (< >).")
    return description


def check_enterprise_project_id(enterprise_project_id: Any) -> str:
    if not isinstance(enterprise_project_id, str) or not _ENTERPRISE_PROJECT_ID.fullmatch(enterprise_project_id):
        raise _reject("IMG.0001", "enterprise_project_id must be '0' (the default project) or a UUID.")
    return enterprise_project_id


def check_tag_set(pairs: list[tuple[str, str]]) -> None:
    """At most MAX_TAGS tags (IMG.0116), each key once (IMG.0115)."""
    if len(pairs) > MAX_TAGS:
        raise _reject("IMG.0116", f"{len(pairs)} tags given; an image holds at most {MAX_TAGS}.")
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _reject("IMG.0115", "Each tag key may appear only once.")


def _check_tag(key: str, value: str) -> None:
    if not 1 <= len(key) <= TAG_KEY_MAX_LENGTH or not _TAG_KEY_CHARACTERS.fullmatch(key):
        raise _reject(
            "IMG.0115", f"Tag key '{key}' must be 1-36 characters of letters, digits, '_', '-' and CJK letters."
        )
    if len(value) > TAG_VALUE_MAX_LENGTH or not _TAG_VALUE_CHARACTERS.fullmatch(value):
        raise _reject(
            "IMG.0115",
            f"Tag value '{value}' must be at most 43 characters of letters, digits, '_', '.', '-' and CJK letters.",
        )


def trimmed_image_tags(image_tags: Any) -> list[tuple[str, str]]:
    """`[{"key": ..., "value": ...}]` as checked (key, value) pairs, spaces around each trimmed as IMS does.

    An absent or null value is the empty value. Refuses (IMG.0115) anything that is not such a list of valid tags.
    """
    if not isinstance(image_tags, list) or not all(
        isinstance(tag, dict) and set(tag) <= {"key", "value"} for tag in image_tags
    ):
        raise _reject("IMG.0115", 'image_tags must be a list of {"key": ..., "value": ...} objects.')
    pairs = []
    for tag in image_tags:
        key, value = tag.get("key"), tag.get("value")
        if value is None:
            value = ""
        if not isinstance(key, str) or not isinstance(value, str):
            raise _reject("IMG.0115", "Each image tag's key and value must be strings.")
        key, value = key.strip(" "), value.strip(" ")
        _check_tag(key, value)
        pairs.append((key, value))
    return pairs


def ims_code_of(error: ValidationError | list[dict[str, Any]]) -> RequestRejectedError:
    """The one IMS error for a failed validation: the first failing rule, in field order."""
    details = error.errors() if isinstance(error, ValidationError) else error
    for detail in details:
        kind = str(detail.get("type", ""))
        if kind in IMS_MESSAGES:
            return RequestRejectedError(kind, str(detail.get("msg", "")) or None)
        location = [part for part in detail.get("loc", ()) if part != "body"]
        if location and location[0] in _CODE_WHEN_MISSING_OR_MISTYPED:
            missing_code, mistyped_code = _CODE_WHEN_MISSING_OR_MISTYPED[str(location[0])]
            if kind == "missing":
                return RequestRejectedError(missing_code, f"'{location[0]}' is required.")
            return RequestRejectedError(mistyped_code, f"'{location[0]}' has the wrong type or value.")
        if location and detail.get("loc", ("",))[0] in ("query", "path"):
            return RequestRejectedError("IMG.0001", f"Parameter '{location[-1]}': {detail.get('msg', 'invalid')}.")
        if kind in ("json_invalid", "json_type"):
            return RequestRejectedError("IMG.0001", "The request body is not valid JSON.")
        if kind in ("model_attributes_type", "dict_type", "model_type"):
            return RequestRejectedError("IMG.0001", "The request body must be a JSON object.")
    return RequestRejectedError("IMG.0001")
