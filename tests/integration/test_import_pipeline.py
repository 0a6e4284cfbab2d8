"""A job created through the API really imports the file: INIT → RUNNING → SUCCESS with an image, bytes intact.

Each test runs the real ASL on moto's Step Functions interpreter with the handlers in-process, then reads the
snapshot back block by block and compares it with `qemu-img convert -O raw` of the same file.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.invocations import most_at_once


@pytest.mark.parametrize(
    "case", ["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "qcow2-compressed", "vmdk-streamOptimized", "vhd-fixed"]
)
def test_an_imported_file_becomes_a_snapshot_holding_exactly_its_non_zero_blocks(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any, case: str
) -> None:
    # Given an image file in the watched bucket
    image_file = image_files[case]
    disk_format = image_file.format

    # When a client imports it and the import runs to its end
    job = importer.import_file(image_file.path, f"disks/data1.{disk_format}")

    # Then the job succeeded and names its image
    assert job["status"] == "SUCCESS", job
    assert job["entities"]["image_name"] == "data-disk-1"
    assert job["entities"]["process_percent"] == 1
    assert job["end_time"] is not None
    image = importer.image(job["entities"]["image_id"])
    assert image["status"] == "active"
    assert image["diskport_source_format"] == disk_format

    # And the snapshot holds every non-zero block of the disk, byte for byte, and no all-zero block
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(image_file.oracle)
    # And the import's temporary files are gone
    assert importer.work_files() == []


# One chunk at a time (one worker beside Fetch, then the Map's MaxConcurrency), so the moments each chunk is done
# are apart.
@pytest.mark.parametrize("stack_parameters", [{"ConvertConcurrency": "1", "WorkersBesideFetch": "1"}])
def test_the_progress_route_follows_the_import_chunk_by_chunk(
    importer: Any, image_files: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack converting one chunk at a time, and a way to look at the job the moment each chunk is done
    from diskport.pipeline import convert

    original_finish = convert.ChunkLeases.finish
    seen: list[dict[str, Any]] = []

    # (the moment a chunk counts as finished, before the last one's worker goes on to seal the snapshot)
    def finish_then_look(leases: Any) -> int:
        chunks_finished = original_finish(leases)
        seen.append(importer.job(leases._job_id)["entities"])
        return chunks_finished

    monkeypatch.setattr(convert.ChunkLeases, "finish", finish_then_look)

    # When a disk of several chunks is imported
    job = importer.import_file(image_files["raw"].path, "disks/data1.raw")

    # Then while converting, the job said so and its progress (a fraction of 1, as IMS) grew with the bytes converted
    assert job["status"] == "SUCCESS"
    assert most_at_once(importer.stack.lambdas.invocations, "ConvertChunkFunction") == 1
    assert len(seen) >= 3
    assert {entities["current_task"] for entities in seen} == {"convert"}
    percents = sorted(entities["process_percent"] for entities in seen)
    assert 0 < percents[0] < percents[-1] <= 1
    # and once ended, IMS names no current task
    assert job["entities"]["current_task"] == ""


def test_a_job_reads_success_only_once_its_image_is_active(importer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a way to look at the job and its image the moment Register ends the job
    from diskport.stores.jobs import JobStore

    original_mark_succeeded = JobStore.mark_succeeded
    seen: list[tuple[str, str]] = []

    def mark_succeeded_then_look(self: JobStore, job_id: str, **fields: Any) -> bool:
        ended = original_mark_succeeded(self, job_id, **fields)
        job = importer.job(job_id)
        seen.append((job["status"], importer.image(job["entities"]["image_id"])["status"]))
        return ended

    monkeypatch.setattr(JobStore, "mark_succeeded", mark_succeeded_then_look)
    # When a file is imported
    job = importer.import_file(b"\x01" * 1024, "disk.raw")
    # Then no client polling the job could see SUCCESS with an image still being saved
    assert job["status"] == "SUCCESS"
    assert seen == [("SUCCESS", "active")]


def test_each_converted_chunk_logs_its_blocks(importer: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Given a disk of two 512 KiB blocks of data
    # When it is imported
    with caplog.at_level(logging.INFO, logger="diskport"):
        job = importer.import_file(b"\x01" * 700_416, "disk.raw")
    # Then the convert function logged the chunk and the blocks it wrote
    assert job["status"] == "SUCCESS"
    (converted,) = [record for record in caplog.records if record.getMessage() == "Chunk converted"]
    assert converted.blocks_written == 2


def test_images_are_listed_with_filters_and_pages(importer: Any) -> None:
    # Given three imported images
    for name in ("alpha", "beta", "gamma"):
        assert importer.import_file(b"\x01" * 1024, f"{name}.raw", name=name)["status"] == "SUCCESS"

    # When the images are listed two at a time
    first = importer.stack.call_api("GET", "/v2/cloudimages", query={"limit": "2"})
    marker = first.body["next"].split("marker=")[1]
    second = importer.stack.call_api("GET", "/v2/cloudimages", query={"limit": "2", "marker": marker})

    # Then every image comes once, newest first, in IMS's shape
    names = [image["name"] for image in first.body["images"] + second.body["images"]]
    assert names == ["gamma", "beta", "alpha"]
    assert "next" not in second.body
    image = first.body["images"][0]
    assert image["status"] == "active" and image["__imagetype"] == "private"
    assert image["__data_origin"] == f"file,{importer.stack.local.physical_name('WatchedBucket')}:gamma.raw"
    assert image["disk_format"] == "raw" and image["__image_size"] == "1024"
    assert image["size"] == 0 and image["virtual_size"] is None and image["diskport_virtual_size_bytes"] == 1024

    # And the filters narrow the list
    assert [image["name"] for image in importer.images(name="beta")] == ["beta"]
    assert importer.images(status="killed") == []
    assert len(importer.images(__imagetype="private")) == 3
    # And another project sees none of them
    other = importer.stack.call_api("GET", "/v2/cloudimages", project_id="999999999999")
    assert other.body == {"images": []}


def test_an_encrypted_import_records_every_ims_field_of_the_image(importer: Any, image_files: dict[str, Any]) -> None:
    # Given an enabled KMS key, and a request with tags and a description
    kms_key = boto3.client("kms").create_key()["KeyMetadata"]
    snapshot_starts = importer.watch_calls("ebs", "StartSnapshot")

    # When the image is imported with that key
    job = importer.import_file(
        image_files["vmdk"].path,
        "disks/data1.vmdk",
        min_disk=50,
        cmk_id=kms_key["KeyId"],
        os_type="Windows",
        description="Data disk 1",
        tags=["team.storage", "env.test"],
    )

    # Then the snapshot was started encrypted with the key, sized min_disk, tagged, idempotent per job
    assert job["status"] == "SUCCESS", job
    (start,) = [json.loads(call["body"]) for call in snapshot_starts]
    assert start["Encrypted"] is True and start["KmsKeyArn"] == kms_key["Arn"]
    assert start["VolumeSize"] == 50 and start["ClientToken"] == job["job_id"]
    assert {"Key": "team", "Value": "storage"} in start["Tags"]

    # And the image carries IMS's fields
    image = importer.image(job["entities"]["image_id"])
    assert image["id"] == job["entities"]["image_id"] and image["name"] == "data-disk-1"
    assert image["status"] == "active" and image["visibility"] == "private"
    assert image["virtual_env_type"] == "DataImage" and image["__image_source_type"] == "uds"
    assert image["__os_type"] == "Windows" and image["__description"] == "Data disk 1"
    assert "description" not in image
    assert image["disk_format"] == "raw" and image["diskport_source_format"] == "vmdk" and image["min_disk"] == 50
    assert image["__image_size"] == str(image_files["vmdk"].path.stat().st_size)
    assert image["__data_origin"] == f"file,{importer.stack.local.physical_name('WatchedBucket')}:disks/data1.vmdk"
    assert image["__system__cmkid"] == kms_key["KeyId"]
    assert image["tags"] == ["team.storage", "env.test"]
    assert image["created_at"] <= image["active_at"] and image["updated_at"]
    assert image["diskport_virtual_size_bytes"] == image_files["vmdk"].oracle.stat().st_size
    assert image["diskport_snapshot_id"].startswith("snap-")


def test_an_empty_qcow2_becomes_an_active_image_with_an_empty_snapshot(importer: Any, tmp_path: Path) -> None:
    # Given a qcow2 with no cluster allocated, so its plan has no chunk at all
    path = tmp_path / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(path), "3M"], check=True, capture_output=True)
    # When it is imported
    job = importer.import_file(path, "empty.qcow2")
    # Then the import still ends SUCCESS, and nothing was written to the snapshot
    assert job["status"] == "SUCCESS", job
    image = importer.image(job["entities"]["image_id"])
    assert image["status"] == "active" and image["diskport_virtual_size_bytes"] == 3 * 1024 * 1024
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == {}


def test_a_raw_disk_of_zeros_stores_no_block(importer: Any) -> None:
    job = importer.import_file(bytes(3 * 524_288), "zeros.raw")
    assert job["status"] == "SUCCESS", job
    assert importer.snapshot_blocks(importer.image(job["entities"]["image_id"])["diskport_snapshot_id"]) == {}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"limit": "0"}, 400, "IMG.0001"),
        ({"limit": "many"}, 400, "IMG.0001"),
        ({"limit": "1001"}, 400, "IMG.0001"),
        ({"id": ""}, 400, "IMG.0001"),
        ({"marker": ""}, 400, "IMG.0001"),
        ({"marker": "not-an-image"}, 404, None),
    ],
)
def test_a_listing_with_a_bad_limit_or_marker_is_refused(
    stack: Any, query: dict[str, str], status: int, code: str | None
) -> None:
    answer = stack.call_api("GET", "/v2/cloudimages", query=query)
    assert answer.status == status, answer.body
    if code is not None:
        assert answer.body["error"]["code"] == code
