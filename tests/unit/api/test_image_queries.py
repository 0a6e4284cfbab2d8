"""`GET /v2/cloudimages` (ims-api.md §5): every documented filter, sort key and page, on a project's images.

The images live in an in-memory stand-in for the Images table; what is tested is which records come back, in
which order, and which queries are refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from diskport.api.image_queries import PARAMETERS, SORT_KEYS, ImageQuery, list_images
from diskport.errors import NotFoundError, RequestRejectedError
from diskport.stores.images import ImageRecord

PROJECT = "0123456789abcdef0123456789abcdef"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def image(name: str, created_at: str, **fields: Any) -> ImageRecord:
    return ImageRecord.model_validate(
        {
            "id": f"{name}-0000-4000-8000-000000000000",
            "name": name,
            "min_disk": 40,
            "__data_origin": f"file,images:{name}.qcow2",
            "owner": PROJECT,
            "created_at": created_at,
            "updated_at": created_at,
            **fields,
        }
    )


IMAGES = [
    image("alpha", "2024-11-06T06:00:00.100Z", status="active", virtual_size=3 * 1024**3, tags=["os.version.1.2"]),
    image("beta", "2024-11-06T07:00:00.200Z", status="killed", min_disk=80, __os_type="Windows", tags=["team.storage"]),
    image(
        "gamma",
        "2024-11-06T08:00:00.300Z",
        status="saving",
        virtual_size=1024,
        __system__cmkid=KEY_ID,
        enterprise_project_id="6f5e4d3c-2b1a-4098-8765-43210fedcba9",
        min_ram=1024,
    ),
    image("delta", "2024-11-06T09:00:00.400Z", status="deleted"),
]


class InMemoryImages:
    """The reads `list_images` makes of the Images table, over a list of records."""

    def __init__(self, images: list[ImageRecord]) -> None:
        self._images = {image.id: image for image in images}

    def get(self, image_id: str, project_id: str) -> ImageRecord | None:
        found = self._images.get(image_id)
        return found if found is not None and found.owner == project_id else None

    def existing(self, image_id: str, project_id: str) -> ImageRecord:
        found = self.get(image_id, project_id)
        if found is None or found.status == "deleted":
            raise NotFoundError(f"Image {image_id} does not exist.")
        return found

    def for_project(self, project_id: str) -> list[ImageRecord]:
        return [image for image in self._images.values() if image.owner == project_id and image.status != "deleted"]


def names(parameters: dict[str, str]) -> list[str]:
    answer = list_images(PROJECT, ImageQuery.from_parameters(parameters), InMemoryImages(IMAGES))  # type: ignore[arg-type]
    return [record["name"] for record in answer.images]


FILTERS = [
    ({}, ["gamma", "beta", "alpha"]),
    ({"id": IMAGES[0].id}, ["alpha"]),
    ({"id": IMAGES[3].id}, []),  # deleted images leave every listing
    ({"name": "beta"}, ["beta"]),
    ({"name": "Beta"}, []),
    ({"status": "active"}, ["alpha"]),
    ({"status": "killed"}, ["beta"]),
    ({"status": "deleted"}, []),
    ({"visibility": "private"}, ["gamma", "beta", "alpha"]),
    ({"visibility": "public"}, []),
    ({"owner": PROJECT}, ["gamma", "beta", "alpha"]),
    ({"owner": "someone-else"}, []),
    ({"container_format": "bare"}, ["gamma", "beta", "alpha"]),
    ({"disk_format": "raw"}, ["gamma", "beta", "alpha"]),
    ({"disk_format": "qcow2"}, []),
    ({"virtual_env_type": "DataImage"}, ["gamma", "beta", "alpha"]),
    ({"virtual_env_type": "FusionCompute"}, []),
    ({"__imagetype": "private"}, ["gamma", "beta", "alpha"]),
    ({"__imagetype": "gold"}, []),
    ({"__isregistered": "true"}, ["gamma", "beta", "alpha"]),
    ({"__os_type": "Windows"}, ["beta"]),
    ({"__os_bit": "64"}, ["gamma", "beta", "alpha"]),
    ({"__os_bit": "32"}, []),
    ({"__platform": "Other"}, ["gamma", "beta", "alpha"]),
    ({"__platform": "CentOS"}, []),
    ({"__system__cmkid": KEY_ID}, ["gamma"]),
    ({"member_status": "accepted"}, []),
    ({"flavor_id": "s3.large.2"}, []),
    ({"architecture": "x86"}, []),
    ({"__support_kvm": "true"}, []),
    ({"__support_xen": "true"}, []),
    ({"__support_largememory": "true"}, []),
    ({"__support_diskintensive": "true"}, []),
    ({"__support_highperformance": "true"}, []),
    ({"__support_xen_gpu_type": "M60_vGPU"}, []),
    ({"__support_kvm_gpu_type": "V100_vGPU"}, []),
    ({"__support_xen_hana": "true"}, []),
    ({"__support_kvm_infiniband": "true"}, []),
    ({"protected": "false"}, ["gamma", "beta", "alpha"]),
    ({"protected": "true"}, []),
    ({"__whole_image": "false"}, ["gamma", "beta", "alpha"]),
    ({"__whole_image": "true"}, []),
    ({"min_disk": "80"}, ["beta"]),
    ({"min_ram": "1024"}, ["gamma"]),
    ({"tag": "os=version.1.2"}, ["alpha"]),
    ({"tag": "os=version"}, []),
    ({"tag": "team"}, ["beta"]),
    ({"tag": "team=storage,os=version.1.2"}, []),  # a repeated parameter: every tag must match
    ({"tag": "os=version.1.2,os"}, ["alpha"]),
    ({"enterprise_project_id": "0"}, ["beta", "alpha"]),
    ({"enterprise_project_id": "6f5e4d3c-2b1a-4098-8765-43210fedcba9"}, ["gamma"]),
    ({"enterprise_project_id": "all_granted_eps"}, ["gamma", "beta", "alpha"]),
    ({"created_at": "gt:2024-11-06T07:00:00Z"}, ["gamma"]),
    ({"created_at": "gte:2024-11-06T07:00:00Z"}, ["gamma", "beta"]),
    ({"created_at": "lt:2024-11-06T07:00:00Z"}, ["alpha"]),
    ({"created_at": "lte:2024-11-06 07:00:00"}, ["beta", "alpha"]),
    ({"created_at": "eq:2024-11-06T07:00:00Z"}, ["beta"]),
    ({"created_at": "neq:2024-11-06T07:00:00Z"}, ["gamma", "alpha"]),
    ({"created_at": "gt:2024-11-06T06:30:00Z,lt:2024-11-06T07:30:00Z"}, ["beta"]),  # a repeated parameter
    ({"updated_at": "lt:2024-11-06T08:00:00Z"}, ["beta", "alpha"]),
    ({"status": "active", "__os_type": "Linux"}, ["alpha"]),
]


@pytest.mark.parametrize(("parameters", "expected"), FILTERS, ids=[str(parameters) for parameters, _ in FILTERS])
def test_each_documented_filter_selects_the_images_it_describes(
    parameters: dict[str, str], expected: list[str]
) -> None:
    assert names(parameters) == expected


def test_the_table_covers_every_filter_the_service_takes() -> None:
    covered = {name for parameters, _ in FILTERS for name in parameters}
    assert covered == set(PARAMETERS) - {"sort_key", "sort_dir", "limit", "marker"}


SORTS = [
    ("name", "asc", ["alpha", "beta", "gamma"]),
    ("name", "desc", ["gamma", "beta", "alpha"]),
    ("status", "asc", ["alpha", "beta", "gamma"]),  # active, killed, saving
    ("id", "asc", ["alpha", "beta", "gamma"]),
    ("size", "desc", ["alpha", "gamma", "beta"]),  # by the disk's byte size, which IMS leaves unavailable
    ("created_at", "asc", ["alpha", "beta", "gamma"]),
    ("created_at", "desc", ["gamma", "beta", "alpha"]),
    # all alike: created_at decides
    ("container_format", "asc", ["alpha", "beta", "gamma"]),
    ("disk_format", "desc", ["gamma", "beta", "alpha"]),
]


@pytest.mark.parametrize(("sort_key", "sort_dir", "expected"), SORTS)
def test_each_sort_key_orders_the_images(sort_key: str, sort_dir: str, expected: list[str]) -> None:
    assert names({"sort_key": sort_key, "sort_dir": sort_dir}) == expected


def test_the_sort_table_covers_every_documented_sort_key() -> None:
    assert {sort_key for sort_key, _, _ in SORTS} == set(SORT_KEYS)


@pytest.mark.parametrize("sort_key", SORT_KEYS)
def test_pages_of_one_follow_the_sort_order_without_repeats(sort_key: str) -> None:
    # Given the images sorted by the key, in one page
    store = InMemoryImages(IMAGES)
    parameters = {"sort_key": sort_key, "sort_dir": "asc"}
    whole = names(parameters)
    # When they are read one page at a time, following the `next` link's marker
    seen: list[str] = []
    page = list_images(PROJECT, ImageQuery.from_parameters({**parameters, "limit": "1"}), store)  # type: ignore[arg-type]
    while True:
        seen.extend(record["name"] for record in page.images)
        if page.next is None:
            break
        marker = page.next.rpartition("marker=")[2]
        query = ImageQuery.from_parameters({**parameters, "limit": "1", "marker": marker})
        page = list_images(PROJECT, query, store)  # type: ignore[arg-type]
    # Then they come in the same order, each once
    assert seen == whole


REFUSED = [
    {"virtual_env": "DataImage"},
    {"__support_arm": "true"},
    {"sort_key": "updated_at"},
    {"sort_dir": "up"},
    {"limit": "0"},
    {"limit": "1001"},
    {"limit": "ten"},
    {"protected": "yes"},
    {"min_disk": "forty"},
    {"created_at": "2024-11-06T07:00:00Z"},
    {"created_at": "after:2024-11-06T07:00:00Z"},
    {"created_at": "gt:yesterday"},
    {"id": ""},
]


@pytest.mark.parametrize("parameters", REFUSED, ids=[str(parameters) for parameters in REFUSED])
def test_an_undocumented_filter_or_unreadable_value_is_refused_with_img_0001(parameters: dict[str, str]) -> None:
    with pytest.raises(RequestRejectedError) as refused:
        ImageQuery.from_parameters(parameters)
    assert refused.value.code == "IMG.0001"
    assert refused.value.http_status == 400


def test_the_refusal_of_an_undocumented_filter_names_it() -> None:
    with pytest.raises(RequestRejectedError) as refused:
        ImageQuery.from_parameters({"name": "alpha", "imagetype": "private", "colour": "blue"})
    assert "'colour', 'imagetype'" in refused.value.reason


def test_a_marker_that_is_no_image_of_the_project_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        names({"marker": IMAGES[3].id})
