"""The upload convention (docs/uploads.md): what an uploaded file's name and metadata make of its import request."""

from __future__ import annotations

import base64

import pytest
from diskport.domain.requests import CreateDataImageRequest, ims_code_of
from diskport.domain.uploads import (
    IMAGE_SUFFIXES,
    default_min_disk,
    default_name,
    job_id_of,
    request_fields_of,
    upload_project_id,
)
from diskport.errors import RequestRejectedError
from diskport.settings import Settings
from diskport.stores.uploaded_objects import UploadedObject
from pydantic import ValidationError

from diskport_emulator import LocalStack

GIB = 1024**3
UPLOAD = UploadedObject(bucket="uploads", key="disks/fedora-data1.qcow2", etag="0c7e9c8e1a0d2b7bd4a6a5d2b9c3f0aa")


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("fedora-data1.qcow2", "fedora-data1"),
        ("disks/2024/fedora-data1.qcow2", "fedora-data1"),
        ("backup.2024-11.vmdk", "backup.2024-11"),
        ("DISK.VHDX", "DISK"),
        ("disk.tar", "disk.tar"),
        ("my disk (v2).vdi", "my disk _v2_"),
        ("données système.raw", "données système"),
        ("  spaced  .img", "spaced"),
        ("#!.qcow2", "__"),
        (".qcow2", ".qcow2"),
        ("   .qcow2", "data-image"),
        ("folder/", "data-image"),
        ("d" * 200 + ".qcow2", "d" * 128),
        ("d" * 127 + " x.qcow2", "d" * 127),
    ],
)
def test_the_default_name_is_the_file_name_made_valid_for_ims(key: str, name: str) -> None:
    made = default_name(key)

    assert made == name
    # and the API's own rules accept it
    CreateDataImageRequest.model_validate({"name": made, "image_url": "b-1:k", "min_disk": 40})


@pytest.mark.parametrize(
    ("virtual_size", "min_disk"),
    [
        (1, 40),
        (40 * GIB, 40),
        (40 * GIB + 1, 41),
        (50 * GIB, 50),
        (2048 * GIB, 2048),
        (2048 * GIB + 512, 2049),
    ],
)
def test_the_default_min_disk_is_the_virtual_size_in_whole_gb_and_at_least_40(virtual_size: int, min_disk: int) -> None:
    assert default_min_disk(virtual_size) == min_disk


def test_without_metadata_the_request_is_the_defaults() -> None:
    assert request_fields_of(UPLOAD, {"owner": "storage-team"}) == {
        "name": "fedora-data1",
        "image_url": "uploads:disks/fedora-data1.qcow2",
        "os_type": "Linux",
    }


def test_metadata_overrides_every_field_of_the_api_body() -> None:
    metadata = {
        "ims-name": "build farm data",
        "ims-description": "Data disk",
        "ims-os-type": "Windows",
        "ims-min-disk": "80",
        "ims-cmk-id": "alias/images",
        "ims-tags": "team.storage,env.prod, ,owner",
    }

    fields = request_fields_of(UPLOAD, metadata)

    assert fields == {
        "name": "build farm data",
        "description": "Data disk",
        "os_type": "Windows",
        "image_url": "uploads:disks/fedora-data1.qcow2",
        "min_disk": 80,
        "cmk_id": "alias/images",
        "tags": ["team.storage", "env.prod", "owner"],
    }
    assert CreateDataImageRequest.model_validate(fields).tag_pairs() == [
        ("team", "storage"),
        ("env", "prod"),
        ("owner", ""),
    ]


def test_a_name_with_letters_beyond_ascii_travels_rfc_2047_encoded() -> None:
    encoded = "=?UTF-8?B?" + base64.b64encode("Dönerdisk".encode()).decode() + "?="

    assert request_fields_of(UPLOAD, {"ims-name": encoded})["name"] == "Dönerdisk"
    assert request_fields_of(UPLOAD, {"ims-name": "=?utf-8?q?caf=C3=A9?="})["name"] == "café"


def test_a_min_disk_that_is_not_a_number_is_left_for_the_api_rules_to_refuse() -> None:
    fields = request_fields_of(UPLOAD, {"ims-min-disk": "forty"})

    with pytest.raises(ValidationError) as refused:
        CreateDataImageRequest.model_validate(fields)

    assert ims_code_of(refused.value).code == "IMG.0055"


def test_an_unknown_ims_metadata_name_is_refused_as_a_likely_misspelling() -> None:
    with pytest.raises(RequestRejectedError) as refused:
        request_fields_of(UPLOAD, {"ims-mindisk": "60", "ims-name": "data"})

    assert refused.value.code == "IMG.0001"
    assert "x-amz-meta-ims-mindisk" in refused.value.reason
    assert "x-amz-meta-ims-min-disk" in refused.value.reason


def test_each_object_version_has_its_own_job_id_and_always_the_same() -> None:
    versioned = UploadedObject(bucket="uploads", key="a.qcow2", version_id="v1", etag="e1")

    assert job_id_of(versioned) == job_id_of(versioned.model_copy())
    assert len(job_id_of(versioned)) == 32 and int(job_id_of(versioned), 16) >= 0
    others = [
        versioned.model_copy(update={"version_id": "v2"}),
        versioned.model_copy(update={"key": "b.qcow2"}),
        versioned.model_copy(update={"bucket": "other"}),
    ]
    assert len({job_id_of(upload) for upload in [versioned, *others]}) == 4
    # without a version id, the ETag tells versions apart, quoted or not
    unversioned = UploadedObject(bucket="uploads", key="a.qcow2", etag="e1")
    assert job_id_of(unversioned) == job_id_of(unversioned.model_copy(update={"etag": '"e1"'}))
    assert job_id_of(unversioned) != job_id_of(unversioned.model_copy(update={"etag": "e2"}))


def test_uploads_belong_to_the_stack_account_or_in_local_mode_to_the_local_project() -> None:
    deployed = Settings.model_validate({"UPLOAD_PROJECT_ID": "123456789012", "PROJECT_ID_SOURCE": "iam"})
    local = Settings.model_validate({"UPLOAD_PROJECT_ID": "123456789012", "PROJECT_ID_SOURCE": "local"})

    assert upload_project_id(deployed) == "123456789012"
    assert upload_project_id(local) == local.local_project_id


def test_the_watched_bucket_notifies_exactly_the_image_suffixes_the_convention_knows() -> None:
    bucket = LocalStack().resources["WatchedBucket"]["Properties"]
    rules = [
        rule
        for configuration in bucket["NotificationConfiguration"]["QueueConfigurations"]
        for rule in configuration["Filter"]["S3Key"]["Rules"]
    ]

    assert all(rule["Name"] == "suffix" for rule in rules)
    assert sorted(rule["Value"] for rule in rules) == sorted(IMAGE_SUFFIXES)
