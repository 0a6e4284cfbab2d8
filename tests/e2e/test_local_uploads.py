"""Local mode, as a user drives it: a file copied into the watched bucket over the S3 API starts its own import.

The user never calls the create API: they upload with any S3 client pointed at the local endpoint, find the
job from the `diskport-job-id` tag on their file, and follow it with the CLI (docs/uploads.md).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from .conftest import LocalModeProcess, SampleDisk

WATCHED_BUCKET = "diskport-watchedbucket"


def job_id_tagged_on(
    local_mode: LocalModeProcess, key: str, timeout_seconds: float = 120, *, version_id: str | None = None
) -> str:
    """The job id the trigger writes onto the uploaded file (or one version of it), once it has."""
    s3 = local_mode.aws_client("s3")
    version = {"VersionId": version_id} if version_id else {}
    deadline = time.monotonic() + timeout_seconds
    while True:
        tag_set = s3.get_object_tagging(Bucket=WATCHED_BUCKET, Key=key, **version)["TagSet"]
        tags = {tag["Key"]: tag["Value"] for tag in tag_set}
        if "diskport-job-id" in tags:
            return tags["diskport-job-id"]
        assert time.monotonic() < deadline, f"{key} has no job id tag yet; see {local_mode.log}"
        time.sleep(0.5)


def job_through_the_cli(local_mode: LocalModeProcess, job_id: str, timeout_seconds: float = 240) -> dict[str, Any]:
    """The job as `diskport job` shows it, once it has ended."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        run = local_mode.cli("job", job_id)
        assert run.returncode == 0, run.stderr
        job: dict[str, Any] = json.loads(run.stdout)
        if job["status"] in ("SUCCESS", "FAIL"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}; see {local_mode.log}"
        time.sleep(0.5)


def test_a_file_uploaded_with_its_parameters_as_metadata_becomes_the_image_they_describe(
    local_mode: LocalModeProcess, sample_disk: SampleDisk, tmp_path: Path
) -> None:
    # Given a qcow2 uploaded to the watched bucket over the S3 API, its import parameters in its metadata
    name = f"uploaded-{uuid.uuid4().hex[:8]}"
    key = f"incoming/{name}.qcow2"
    local_mode.aws_client("s3").upload_file(
        str(sample_disk.qcow2),
        WATCHED_BUCKET,
        key,
        ExtraArgs={"Metadata": {"ims-name": name, "ims-min-disk": "48", "ims-tags": "suite.e2e"}},
    )

    # When the user finds the job from the tag on their file and follows it with the CLI
    job = job_through_the_cli(local_mode, job_id_tagged_on(local_mode, key))

    # Then the import succeeded and the image is the one the metadata describes
    assert job["status"] == "SUCCESS", job
    assert job["entities"]["image_name"] == name
    images = json.loads(local_mode.cli("images", "--id", job["entities"]["image_id"]).stdout)
    (image,) = images
    assert image["status"] == "active"
    assert image["min_disk"] == 48
    assert image["tags"] == ["suite.e2e"]
    assert image["__data_origin"] == f"file,{WATCHED_BUCKET}:{key}"
    # and exporting it gives back the disk the uploaded file holds
    exported = tmp_path / "exported.raw"
    run = local_mode.cli("export", job["entities"]["image_id"], str(exported))
    assert run.returncode == 0, run.stderr
    assert exported.read_bytes() == sample_disk.raw.read_bytes()


def test_an_upload_that_breaks_a_rule_shows_its_fail_job_through_the_cli(
    local_mode: LocalModeProcess, sample_disk: SampleDisk
) -> None:
    # Given an upload whose metadata names an os_type IMS does not know
    key = f"incoming/{uuid.uuid4().hex[:8]}.qcow2"
    local_mode.aws_client("s3").upload_file(
        str(sample_disk.qcow2), WATCHED_BUCKET, key, ExtraArgs={"Metadata": {"ims-os-type": "BeOS"}}
    )

    # When the user looks up the job their file names
    job = job_through_the_cli(local_mode, job_id_tagged_on(local_mode, key))

    # Then it failed, and says why
    assert job["status"] == "FAIL"
    assert job["error_code"] == "IMG.0122"
    assert "os_type" in job["fail_reason"]


def test_each_version_of_an_uploaded_file_gets_the_job_its_own_metadata_describes(
    local_mode: LocalModeProcess, sample_disk: SampleDisk
) -> None:
    # Given one key uploaded twice to the (versioned) watched bucket, each version breaking another rule
    key = f"incoming/{uuid.uuid4().hex[:8]}.qcow2"
    s3 = local_mode.aws_client("s3")
    versions = [
        s3.put_object(Bucket=WATCHED_BUCKET, Key=key, Body=sample_disk.qcow2.read_bytes(), Metadata=metadata)[
            "VersionId"
        ]
        for metadata in ({"ims-os-type": "BeOS"}, {"ims-min-disk": "30"})
    ]

    # When the user looks up the job each version names
    first, second = (
        job_through_the_cli(local_mode, job_id_tagged_on(local_mode, key, version_id=version)) for version in versions
    )

    # Then each version has its own job, refused for what its own metadata says
    assert first["job_id"] != second["job_id"]
    assert (first["status"], first["error_code"]) == ("FAIL", "IMG.0122")
    assert (second["status"], second["error_code"]) == ("FAIL", "IMG.0055")
