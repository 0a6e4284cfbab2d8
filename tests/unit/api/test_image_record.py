"""The image record as IMS answers it (ims-api.md §5): IMS's names, types and values, our facts beside them."""

from __future__ import annotations

from typing import Any

import pytest
from diskport.stores.images import ImageRecord

GIB = 1024**3
INT32_MAX = 2**31 - 1
# The Go SDK's ImageInfo (huaweicloud-sdk-go-v3 services/ims/v2/model/model_image_info.go): the fields it requires,
# and the JSON type each must have to decode.
GO_REQUIRED: dict[str, type] = {
    "__image_size": str,
    "__image_source_type": str,
    "__imagetype": str,
    "__isregistered": str,
    "__os_type": str,
    "container_format": str,
    "created_at": str,
    "id": str,
    "min_disk": int,
    "min_ram": int,
    "name": str,
    "owner": str,
    "protected": bool,
    "self": str,
    "status": str,
    "tags": list,
    "updated_at": str,
    "virtual_env_type": str,
    "visibility": str,
}
# Optional fields the Go SDK types as strings (a number or null there would not decode).
GO_OPTIONAL_STRINGS = (
    "__data_origin",
    "__description",
    "__os_bit",
    "__os_version",
    "__platform",
    "__originalimagename",
    "__backup_id",
    "__lazyloading",
    "__root_origin",
    "__system__cmkid",
    "checksum",
    "disk_format",
    "enterprise_project_id",
    "file",
    "schema",
    "active_at",
)


def active_image(**fields: Any) -> ImageRecord:
    return ImageRecord.model_validate(
        {
            "id": "aa5306f7-0000-4000-8000-000000000001",
            "name": "fedora-data1",
            "description": "Data disk 1 of Fedora",
            "status": "active",
            "min_disk": 40,
            "__image_size": str(3 * GIB + 4096),
            "__data_origin": "file,sdk-images:fedora_data1.qcow2",
            "__system__cmkid": "1234abcd-12ab-34cd-56ef-1234567890ab",
            "tags": ["aaa.111", "os.version.1.2"],
            "owner": "0123456789abcdef0123456789abcdef",
            "active_at": "2024-11-06T06:37:03.742Z",
            "checksum": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            "size": 3 * GIB,
            "snapshot_id": "snap-0123456789abcdef0",
            "source_format": "qcow2",
            "virtual_size": 3 * GIB,
            "job_id": "9a175ac692fa125401930027b9c026b3",
            **fields,
        }
    )


def test_a_3_gib_image_decodes_with_the_go_sdks_types() -> None:
    record = active_image().to_wire()
    for name, json_type in GO_REQUIRED.items():
        assert isinstance(record[name], json_type), name
    for name in GO_OPTIONAL_STRINGS:
        assert isinstance(record[name], str), name
    # size and virtual_size are 32-bit there: IMS leaves them unavailable (0, null), the byte counts go elsewhere
    assert record["size"] == 0 and record["virtual_size"] is None
    assert record["diskport_virtual_size_bytes"] == 3 * GIB > INT32_MAX


def test_the_description_is_answered_under_imss_name() -> None:
    record = active_image().to_wire()
    assert record["__description"] == "Data disk 1 of Fedora"
    assert "description" not in record


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("visibility", "private"),
        ("__imagetype", "private"),
        ("virtual_env_type", "DataImage"),
        ("__image_source_type", "uds"),
        ("__os_type", "Linux"),
        ("__isregistered", "true"),
        ("__root_origin", "file"),
        ("__data_origin", "file,sdk-images:fedora_data1.qcow2"),
        ("container_format", "bare"),
        ("disk_format", "raw"),
        ("min_ram", 0),
        ("protected", False),
        ("enterprise_project_id", "0"),
        ("tags", ["aaa.111", "os.version.1.2"]),
        ("file", "/v2/images/aa5306f7-0000-4000-8000-000000000001/file"),
        ("self", "/v2/images/aa5306f7-0000-4000-8000-000000000001"),
        ("schema", "/v2/schemas/image"),
        ("__system__cmkid", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("active_at", "2024-11-06T06:37:03.742Z"),
    ],
)
def test_a_data_image_imported_from_a_file_answers_imss_values(field: str, value: Any) -> None:
    assert active_image().to_wire()[field] == value


def test_our_own_facts_are_in_clearly_named_extension_fields_not_in_imss() -> None:
    record = active_image().to_wire()
    assert record["diskport_snapshot_id"] == "snap-0123456789abcdef0"
    assert record["diskport_source_format"] == "qcow2"
    assert record["diskport_job_id"] == "9a175ac692fa125401930027b9c026b3"
    assert record["diskport_snapshot_checksum"] == "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
    # and IMS's fields do not carry them under another meaning
    assert record["checksum"] == ""
    assert {"snapshot_id", "source_format", "job_id"}.isdisjoint(record)


def test_an_image_not_yet_active_or_encrypted_leaves_those_fields_out() -> None:
    record = active_image(status="queued", active_at=None, **{"__system__cmkid": None}).to_wire()
    assert "active_at" not in record and "__system__cmkid" not in record


def test_the_tags_split_at_the_first_dot() -> None:
    assert active_image().tag_pairs == [("aaa", "111"), ("os", "version.1.2")]
