"""The official Huawei Cloud SDK for IMS works against diskport unchanged: the API is wire-compatible."""

from __future__ import annotations

import time
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkims.v2 import (
    CreateDataImageRequest,
    CreateDataImageRequestBody,
    ImageTag,
    ImsClient,
    ListImagesRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
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
    assert progress.entities.process_percent == 100
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
