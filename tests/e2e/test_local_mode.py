"""A newcomer's local mode works end to end over HTTP: import a qcow2, follow the job, list and export the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from diskport_emulator.template import PROJECT_ROOT

from .conftest import LocalModeProcess, SampleDisk

CREATE_ROUTE = "/v1/cloudimages/dataimages/action"


def test_an_uploaded_qcow2_becomes_an_image_whose_export_is_the_disk_it_holds(
    local_mode: LocalModeProcess, sample_disk: SampleDisk, tmp_path: Path
) -> None:
    # Given a qcow2 uploaded to a bucket in the emulator
    local_mode.aws_client("s3").create_bucket(Bucket="e2e-images")
    local_mode.aws_client("s3").upload_file(str(sample_disk.qcow2), "e2e-images", "disks/sample.qcow2")

    # When an IMS client asks for a data image from it
    created = local_mode.call(
        "POST",
        CREATE_ROUTE,
        {"name": "e2e-data-disk", "image_url": "e2e-images:disks/sample.qcow2", "min_disk": 40, "tags": ["suite.e2e"]},
    )
    assert created.status == 200, created.body
    job = local_mode.wait_for_job(created.body["job_id"])

    # Then the job succeeds and names the image
    assert job["status"] == "SUCCESS", job
    assert job["job_type"] == "imsImportDataImageJob"
    image_id = job["entities"]["image_id"]
    assert job["entities"]["image_name"] == "e2e-data-disk"

    # and the image is listed, active, as IMS describes a data image imported from a file
    listed = local_mode.call("GET", f"/v2/cloudimages?id={image_id}")
    assert listed.status == 200
    (image,) = listed.body["images"]
    assert image["status"] == "active"
    assert image["virtual_env_type"] == "DataImage"
    assert image["__data_origin"] == "file,e2e-images:disks/sample.qcow2"
    assert image["min_disk"] == 40

    # and exporting it gives back exactly the disk the qcow2 holds
    exported = tmp_path / "exported.raw"
    run = local_mode.cli("export", image_id, str(exported))
    assert run.returncode == 0, run.stderr
    assert exported.read_bytes() == sample_disk.raw.read_bytes()


def test_the_cli_uploads_a_local_file_imports_it_and_waits_for_the_job(
    local_mode: LocalModeProcess, sample_disk: SampleDisk
) -> None:
    # When
    run = local_mode.cli(
        "import", str(sample_disk.qcow2), "--name", "cli-disk", "--min-disk", "40", "--tag", "via=cli", "--wait"
    )
    # Then the command ends with the successful job, having shown its progress
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "SUCCESS"
    assert "100.0%" in run.stderr
    # and the image carries the tag and is found by the images command
    images = json.loads(local_mode.cli("images", "--id", job["entities"]["image_id"]).stdout)
    assert [image["tags"] for image in images] == [["via.cli"]]


def test_a_file_uploaded_to_the_watched_bucket_starts_an_import_by_itself(
    local_mode: LocalModeProcess, sample_disk: SampleDisk
) -> None:
    # Given the watched bucket of the template
    key = f"incoming/{uuid.uuid4().hex[:8]}.qcow2"
    # When a file is uploaded to it
    local_mode.aws_client("s3").upload_file(str(sample_disk.qcow2), "diskport-watchedbucket", key)
    # Then an image from that file appears and becomes active, with no API call
    image = _wait_for_image(local_mode, lambda image: image.get("__data_origin", "").endswith(key))
    assert image["status"] == "active", image


def test_a_failed_import_says_why(local_mode: LocalModeProcess) -> None:
    created = local_mode.call(
        "POST", CREATE_ROUTE, {"name": "missing-file", "image_url": "no-such-bucket:disk.qcow2", "min_disk": 40}
    )
    assert created.status == 200, created.body
    job = local_mode.wait_for_job(created.body["job_id"])
    assert job["status"] == "FAIL"
    assert job["error_code"].startswith("IMG.")
    assert job["fail_reason"]


def test_the_cli_signs_its_requests_when_given_an_endpoint(local_mode: LocalModeProcess) -> None:
    # Local mode performs no IAM check, so a signed request is served like any other
    run = local_mode.cli("images", "--endpoint", local_mode.api_url, "--region", "us-east-1")
    assert run.returncode == 0, run.stderr
    assert isinstance(json.loads(run.stdout), list)


def test_an_unknown_route_and_a_bad_request_answer_ims_error_bodies(local_mode: LocalModeProcess) -> None:
    unknown = local_mode.call("GET", "/v1/cloudimages")
    assert unknown.status == 404
    assert unknown.body["error"]["code"] == "IMG.0404"
    refused = local_mode.call("POST", CREATE_ROUTE, {"name": "x", "image_url": "bucket:disk.qcow2", "min_disk": 4})
    assert refused.status == 400
    assert refused.body == {"error": {"code": "IMG.0055", "message": refused.body["error"]["message"]}}


def test_the_openapi_document_is_served(local_mode: LocalModeProcess) -> None:
    document = local_mode.call("GET", "/openapi.json")
    assert document.status == 200
    assert CREATE_ROUTE in document.body["paths"]
    assert "/v1/{project_id}/jobs/{job_id}" in document.body["paths"]


def test_make_demo_imports_a_sample_exports_it_and_finds_the_same_bytes(local_mode: LocalModeProcess) -> None:
    # Given local mode running (the demo uses it rather than starting its own), and the venv's tools first on PATH
    environment = {**local_mode.environment, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # When the demo script runs
    run = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "demo.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it reports that the exported image equals the sample's raw content
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "Using the local mode running on port" in run.stdout
    assert "MATCH: the exported image is byte for byte the sample's raw content." in run.stdout


def _wait_for_image(local_mode: LocalModeProcess, wanted: Any, timeout_seconds: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        images = [image for image in local_mode.call("GET", "/v2/cloudimages").body["images"] if wanted(image)]
        if images and images[0]["status"] in ("active", "killed"):
            return dict(images[0])
        assert time.monotonic() < deadline, f"no finished image yet: {images}; see {local_mode.log}"
        time.sleep(0.5)
