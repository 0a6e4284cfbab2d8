"""The official Huawei Cloud SDK for IMS works against diskport unchanged: the API is wire-compatible."""

from __future__ import annotations

import time
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    BatchAddOrDeleteTagsRequest,
    BatchAddOrDeleteTagsRequestBody,
    CreateDataImageInSafeModeRequest,
    CreateDataImageRequest,
    CreateDataImageRequestBody,
    GlanceDeleteImageRequest,
    GlanceDeleteImageRequestBody,
    ImageTag,
    ImsClient,
    ListImagesRequest,
    ListImageTagsRequest,
    ResourceTag,
    ShowImageQuotaRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
    UpdateImageRequest,
    UpdateImageRequestBody,
)

from .conftest import PROJECT_ID, LocalModeProcess, SampleDisk

# The SDK's own deprecations (its signer's utcnow, show_job in favour of newer calls) are not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:huaweicloudsdkcore.signer.signer"),
    pytest.mark.filterwarnings("ignore:Method 'show_job' of ImsClient is deprecated:DeprecationWarning"),
]


@pytest.fixture
def ims(local_mode: LocalModeProcess) -> Any:
    """The SDK's client, built the way its documentation shows, pointed at local mode."""
    credentials = BasicCredentials("local-access-key", "local-secret-key", PROJECT_ID)
    return ImsClient.new_builder().with_credentials(credentials).with_endpoints([local_mode.api_url]).build()


@pytest.fixture
def uploaded_disk(local_mode: LocalModeProcess, sample_disk: SampleDisk) -> str:
    local_mode.aws_client("s3").create_bucket(Bucket="sdk-images")
    local_mode.aws_client("s3").upload_file(str(sample_disk.qcow2), "sdk-images", "fedora_data1.qcow2")
    return "sdk-images:fedora_data1.qcow2"


def test_the_sdk_creates_a_data_image_and_follows_its_job_to_success(ims: Any, uploaded_disk: str) -> None:
    # When the SDK creates a data image as in the IMS documentation's example
    body = CreateDataImageRequestBody(
        name="fedora-data1",
        image_url=uploaded_disk,
        description="Data disk 1 of Fedora",
        min_disk=40,
        os_type="Linux",
        image_tags=[ImageTag(key="aaa", value="111")],
    )
    created = ims.create_data_image(CreateDataImageRequest(body=body))
    assert created.status_code == 200
    assert len(created.job_id) == 32

    # Then polling show_job, as Terraform's provider does, ends in SUCCESS with the image id
    deadline = time.monotonic() + 240
    job = ims.show_job(ShowJobRequest(job_id=created.job_id))
    while job.status not in ("SUCCESS", "FAIL"):
        assert job.status in ("INIT", "RUNNING")
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.5)
        job = ims.show_job(ShowJobRequest(job_id=created.job_id))
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    assert job.job_type == "imsImportDataImageJob"
    assert job.entities.image_name == "fedora-data1"
    image_id = job.entities.image_id
    assert image_id

    # and the progress view and the image list agree with it
    progress = ims.show_job_progress(ShowJobProgressRequest(job_id=created.job_id))
    assert progress.status == "SUCCESS"
    # as IMS answers an ended job's progress: the whole of 1, no current task
    assert progress.entities.process_percent == 1
    assert progress.entities.current_task == ""
    assert progress.entities.image_id == image_id
    images = ims.list_images(ListImagesRequest(id=image_id)).images
    assert [(image.id, image.name, image.status, image.min_disk) for image in images] == [
        (image_id, "fedora-data1", "active", 40)
    ]
    assert images[0].virtual_env_type == "DataImage"


def test_a_refused_request_reaches_the_sdk_as_its_ims_error_code(ims: Any, uploaded_disk: str) -> None:
    body = CreateDataImageRequestBody(name="too-small", image_url=uploaded_disk, min_disk=20)
    with pytest.raises(ClientRequestException) as refused:
        ims.create_data_image(CreateDataImageRequest(body=body))
    assert refused.value.status_code == 400
    assert refused.value.error_code == "IMG.0055"
    assert refused.value.error_msg


def test_an_unknown_job_reaches_the_sdk_as_not_found(ims: Any) -> None:
    with pytest.raises(ClientRequestException) as refused:
        ims.show_job(ShowJobRequest(job_id="0" * 32))
    assert refused.value.status_code == 404
    assert refused.value.error_code.startswith("IMG.")


def wait_for_image_id(ims: Any, job_id: str) -> str:
    """Poll show_job every half second, as Terraform's provider does every 10 s, until the job ends."""
    deadline = time.monotonic() + 240
    job = ims.show_job(ShowJobRequest(job_id=job_id))
    while job.status not in ("SUCCESS", "FAIL"):
        assert job.status, "Terraform treats an empty status as an error"
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.5)
        job = ims.show_job(ShowJobRequest(job_id=job_id))
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    return str(job.entities.image_id)


def terraform_read(local_mode: LocalModeProcess, image_id: str) -> dict[str, Any] | None:
    """What the provider's read does: GET /v2/cloudimages?id=, then images[0] (None when the list is empty)."""
    answer = local_mode.call("GET", f"/v2/cloudimages?id={image_id}")
    assert answer.status == 200, answer.body
    images = answer.body["images"]
    return dict(images[0]) if images else None


def test_the_terraform_resources_whole_sequence_of_calls_works_against_diskport(
    ims: Any, local_mode: LocalModeProcess, uploaded_disk: str
) -> None:
    """huaweicloud_ims_obs_data_image: create, poll, read, read tags, update name, description and tags, destroy."""
    quota_before = ims.show_image_quota(ShowImageQuotaRequest()).quotas.resources[0]

    # Create, as the provider builds its body, and poll the job
    body = CreateDataImageRequestBody(
        name="tf-data1",
        image_url=uploaded_disk,
        min_disk=40,
        description="Made by Terraform",
        image_tags=[ImageTag(key="owner", value="team-a"), ImageTag(key="os", value="version.1.2")],
        enterprise_project_id="0",
    )
    image_id = wait_for_image_id(ims, ims.create_data_image(CreateDataImageRequest(body=body)).job_id)

    # Read: every attribute the provider sets from the record, with IMS's names and values
    image = terraform_read(local_mode, image_id)
    assert image is not None
    data_origin = image["__data_origin"]
    assert data_origin.startswith("file,") and data_origin.removeprefix("file,") == uploaded_disk  # image_url
    assert (image["name"], image["min_disk"], image["__os_type"]) == ("tf-data1", 40, "Linux")
    assert image["__description"] == "Made by Terraform"  # the provider's `description`: no diff on every plan
    assert "__system__cmkid" not in image  # cmk_id: not encrypted
    assert image["enterprise_project_id"] == "0"
    assert image["file"] == f"/v2/images/{image_id}/file" and image["self"] == f"/v2/images/{image_id}"
    assert image["schema"] == "/v2/schemas/image"
    assert (image["status"], image["visibility"], image["protected"]) == ("active", "private", False)
    assert (image["container_format"], image["disk_format"]) == ("bare", "raw")
    assert (image["__os_bit"], image["__platform"], image["__isregistered"]) == ("64", "Other", "true")
    assert image["__os_version"] == "Other Linux(64 bit)"
    assert (image["virtual_env_type"], image["__image_source_type"], image["__imagetype"]) == (
        "DataImage",
        "uds",
        "private",
    )
    assert (image["__originalimagename"], image["__backup_id"], image["__lazyloading"]) == ("", "", "false")
    assert image["__root_origin"] == "file"
    assert int(image["__image_size"]) > 0
    assert image["created_at"] <= image["active_at"] <= image["updated_at"]
    assert image["size"] == 0 and image["virtual_size"] is None  # what the Go SDK's 32-bit fields decode
    # and the SDK decodes the same record
    (decoded,) = ims.list_images(ListImagesRequest(id=image_id)).images
    assert (decoded.description, decoded.data_origin, decoded.image_size) == (
        "Made by Terraform",
        data_origin,
        image["__image_size"],
    )
    assert decoded._self == image["self"] and decoded.root_origin == "file"

    # Read tags
    tags = ims.list_image_tags(ListImageTagsRequest(image_id=image_id)).tags
    assert {(tag.key, tag.value) for tag in tags} == {("owner", "team-a"), ("os", "version.1.2")}

    # Update: rename, then redescribe, each its own PATCH as the provider sends them
    for path, value in (("/name", "tf-data1-renamed"), ("/__description", "Renamed by Terraform")):
        patch = UpdateImageRequestBody(op="replace", path=path, value=value)
        updated = ims.update_image(UpdateImageRequest(image_id=image_id, body=[patch]))
        assert updated.id == image_id
    # and replace the tags: delete the old ones, create the new ones
    path_tags = [ResourceTag(key=tag.key, value=tag.value) for tag in tags]
    ims.batch_add_or_delete_tags(
        BatchAddOrDeleteTagsRequest(
            image_id=image_id, body=BatchAddOrDeleteTagsRequestBody(action="delete", tags=path_tags)
        )
    )
    new_tags = [ResourceTag(key="owner", value="team-b"), ResourceTag(key="环境", value="生产")]
    ims.batch_add_or_delete_tags(
        BatchAddOrDeleteTagsRequest(
            image_id=image_id, body=BatchAddOrDeleteTagsRequestBody(action="create", tags=new_tags)
        )
    )
    image = terraform_read(local_mode, image_id)
    assert image is not None
    assert (image["name"], image["__description"]) == ("tf-data1-renamed", "Renamed by Terraform")
    tags = ims.list_image_tags(ListImageTagsRequest(image_id=image_id)).tags
    assert {(tag.key, tag.value) for tag in tags} == {("owner", "team-b"), ("环境", "生产")}
    quota_during = ims.show_image_quota(ShowImageQuotaRequest()).quotas.resources[0]
    assert (quota_during.type, quota_during.used) == ("image", quota_before.used + 1)

    # Destroy: read first, delete, then read until the image is gone
    assert terraform_read(local_mode, image_id) is not None
    snapshot_id = image["diskport_snapshot_id"]
    deleted = ims.glance_delete_image(
        GlanceDeleteImageRequest(image_id=image_id, body=GlanceDeleteImageRequestBody(delete_backup=False))
    )
    assert deleted.status_code == 204
    deadline = time.monotonic() + 30
    while terraform_read(local_mode, image_id) is not None:
        assert time.monotonic() < deadline, "the deleted image is still listed"
        time.sleep(0.5)
    # and its snapshot is gone, and its place in the quota is free again
    remaining = local_mode.aws_client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert snapshot_id not in {snapshot["SnapshotId"] for snapshot in remaining}
    assert ims.show_image_quota(ShowImageQuotaRequest()).quotas.resources[0].used == quota_before.used


def test_the_safe_mode_create_works_like_the_v1_create(ims: Any, uploaded_disk: str) -> None:
    body = CreateDataImageRequestBody(name="safe-mode-data1", image_url=uploaded_disk, min_disk=40)
    created = ims.create_data_image_in_safe_mode(CreateDataImageInSafeModeRequest(body=body))
    assert wait_for_image_id(ims, created.job_id)


def test_a_refusal_carries_the_request_id_the_sdk_reports(ims: Any, local_mode: LocalModeProcess) -> None:
    with pytest.raises(ClientRequestException) as refused:
        ims.update_image(
            UpdateImageRequest(
                image_id="aa5306f7-0000-4000-8000-00000000dead",
                body=[UpdateImageRequestBody(op="replace", path="/name", value="x")],
            )
        )
    assert refused.value.status_code == 404
    assert refused.value.request_id
    # and the request id finds the request's lines in the log
    assert refused.value.request_id in local_mode.log.read_text()


def test_tags_ims_allows_are_accepted_by_the_sdks_create(ims: Any, uploaded_disk: str) -> None:
    body = CreateDataImageRequestBody(
        name="tagged-data1",
        image_url=uploaded_disk,
        min_disk=40,
        tags=["os.version.1.2"],
    )
    assert len(ims.create_data_image(CreateDataImageRequest(body=body)).job_id) == 32
    body = CreateDataImageRequestBody(
        name="tagged-data2", image_url=uploaded_disk, min_disk=40, image_tags=[ImageTag(key=" 版本 ", value="1.0")]
    )
    assert len(ims.create_data_image(CreateDataImageRequest(body=body)).job_id) == 32
