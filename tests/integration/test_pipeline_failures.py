"""Every way an import can fail ends the same clean way: job FAIL with its IMS code and a reason a person can act
on, the image `killed`, no snapshot and no work file left behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from diskport.settings import get_settings
from diskport.stores import Stores
from diskport.stores.jobs import JobStore

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXAMPLE_JOB_ID = "9a175ac692fa125401930027b9c026b3"
DISK = b"\x5a" * 700_416  # a small raw disk (whole sectors): two blocks of data


def assert_failed_cleanly(importer: Any, job: dict[str, Any], code: str) -> str:
    """The job ended FAIL with `code`; its image is killed; nothing of the import is left. Answers the reason."""
    assert job["status"] == "FAIL", job
    assert job["error_code"] == code, job
    assert job["end_time"] is not None
    reason = str(job["fail_reason"])
    assert reason and "Traceback" not in reason and 'File "' not in reason
    (image,) = importer.images(name="data-disk-1")
    assert image["status"] == "killed"
    assert importer.snapshot_ids() == []
    assert importer.work_files() == []
    return reason


def test_a_missing_object_fails_with_img_0121(importer: Any) -> None:
    # Given no object at the image_url; When it is imported
    job = importer.wait_for_end(importer.start(f"{importer.stack.local.physical_name('WatchedBucket')}:nothing.qcow2"))
    # Then
    reason = assert_failed_cleanly(importer, job, "IMG.0121")
    assert "nothing.qcow2" in reason


def test_a_bucket_the_service_cannot_reach_fails_with_img_0069(importer: Any) -> None:
    job = importer.wait_for_end(importer.start("diskport-no-such-bucket:disk.raw"))
    reason = assert_failed_cleanly(importer, job, "IMG.0069")
    assert "diskport-no-such-bucket" in reason


def test_an_object_outside_the_standard_storage_class_fails_with_img_0057_naming_the_class(importer: Any) -> None:
    # Given the file archived in Glacier
    image_url = importer.upload(DISK, "archived.raw", StorageClass="GLACIER")
    # When it is imported
    job = importer.wait_for_end(importer.start(image_url))
    # Then the reason says what to do
    reason = assert_failed_cleanly(importer, job, "IMG.0057")
    assert "GLACIER" in reason and "Standard" in reason


def test_an_empty_file_fails_with_img_0057(importer: Any) -> None:
    job = importer.import_file(b"", "empty.raw")
    reason = assert_failed_cleanly(importer, job, "IMG.0057")
    assert "empty" in reason


def test_a_virtual_disk_larger_than_min_disk_fails_with_img_0055_giving_both_sizes(
    importer: Any, tmp_path: Path
) -> None:
    # Given a qcow2 whose virtual disk is 41 GiB (the file itself is tiny)
    path = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(path), "41G"], check=True, capture_output=True)
    # When it is imported with min_disk 40
    job = importer.import_file(path, "big.qcow2", min_disk=40)
    # Then the reason gives the disk's size and min_disk
    reason = assert_failed_cleanly(importer, job, "IMG.0055")
    assert str(41 * 1024**3) in reason and "40 GB" in reason


def test_an_image_with_a_backing_file_is_refused_with_img_0057(importer: Any, tmp_path: Path) -> None:
    # Given a qcow2 that would read another file of the host
    path = tmp_path / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", str(path), "1G"],
        check=True,
        capture_output=True,
    )
    job = importer.import_file(path, "overlay.qcow2")
    assert_failed_cleanly(importer, job, "IMG.0057")


def test_an_unknown_kms_key_fails_with_img_0095(importer: Any) -> None:
    job = importer.import_file(DISK, "disk.raw", cmk_id="11111111-2222-3333-4444-555555555555")
    assert_failed_cleanly(importer, job, "IMG.0095")


def test_a_disabled_kms_key_fails_with_img_0097(importer: Any) -> None:
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    job = importer.import_file(DISK, "disk.raw", cmk_id=key_id)
    reason = assert_failed_cleanly(importer, job, "IMG.0097")
    assert key_id in reason


def test_a_kms_key_the_service_may_not_use_fails_with_img_0099(importer: Any) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    importer.fail_calls("kms", "DescribeKey", "AccessDeniedException")
    job = importer.import_file(DISK, "disk.raw", cmk_id=key_id)
    assert_failed_cleanly(importer, job, "IMG.0099")


def test_a_project_at_its_image_quota_fails_with_img_0015(importer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a project allowed one private image, which it has
    monkeypatch.setenv("MAX_PRIVATE_IMAGES", "1")
    get_settings.cache_clear()
    assert importer.import_file(DISK, "first.raw")["status"] == "SUCCESS"
    # When it imports another
    job = importer.import_file(DISK, "second.raw", name="data-disk-2")
    # Then the import is refused and no image is added
    assert job["status"] == "FAIL" and job["error_code"] == "IMG.0015", job
    assert [image["name"] for image in importer.images()] == ["data-disk-1"]
    assert len(importer.snapshot_ids()) == 1


def test_a_failed_import_gives_its_place_in_the_image_quota_back(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a project allowed one private image, whose first import fails (its image is killed)
    monkeypatch.setenv("MAX_PRIVATE_IMAGES", "1")
    get_settings.cache_clear()
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    boto3.client("kms").disable_key(KeyId=key_id)
    failed = importer.import_file(DISK, "first.raw", cmk_id=key_id)
    assert failed["status"] == "FAIL" and failed["error_code"] != "IMG.0015", failed
    # When it imports again
    job = importer.import_file(DISK, "second.raw", name="data-disk-2")
    # Then the killed image does not count: the import succeeds, and so the project is at its quota again
    assert job["status"] == "SUCCESS", job
    assert importer.import_file(DISK, "third.raw", name="data-disk-3")["error_code"] == "IMG.0015"


def test_concurrent_imports_never_exceed_the_image_quota(importer: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from diskport.errors import ImageQuotaError
    from diskport.stores.images import ImageRecord, ImageStore

    # Given a project allowed 3 images, and 12 Fetch steps creating an image each at the same moment
    project_id = "0123456789ab0123456789ab0123456789"

    def create(number: int) -> str:
        image = ImageRecord.model_validate(
            {"name": f"disk-{number}", "min_disk": 1, "__data_origin": "file,bucket:disk.raw", "owner": project_id}
        )
        try:
            return ImageStore().create_or_get(image, quota=3).id
        except ImageQuotaError:
            return "refused"

    # When they race (the count and the image are one transaction)
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(create, range(12)))

    # Then exactly 3 images exist, and the project's count says so
    assert len([outcome for outcome in outcomes if outcome != "refused"]) == 3
    assert len(importer.stack.table("ImagesTable").scan()["Items"]) == 3
    count = importer.stack.table("ProjectsTable").get_item(Key={"project_id": project_id})["Item"]["images_counted"]
    assert count == 3


def test_a_file_changed_during_import_fails_with_img_0057_and_removes_the_half_written_snapshot(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file that is overwritten once Fetch has noted its ETag
    from diskport.pipeline import fetch

    original_fetch = fetch.fetch_source
    image_url = importer.upload(DISK, "changing.raw")

    def fetch_then_overwrite(job_id: str, stores: Stores) -> Any:
        result = original_fetch(job_id, stores)
        importer.upload(b"\x33" * 700_416, "changing.raw")
        return result

    monkeypatch.setattr(fetch, "fetch_source", fetch_then_overwrite)
    # When it is imported
    job = importer.wait_for_end(importer.start(image_url))
    # Then convert's reason reaches the job, and the snapshot Fetch started is deleted
    reason = assert_failed_cleanly(importer, job, "IMG.0057")
    assert "changed during import" in reason


def test_an_uploaded_file_replaced_before_its_import_starts_is_not_imported_under_the_old_job(importer: Any) -> None:
    from diskport.domain.imports import start_import
    from diskport.domain.requests import CreateDataImageRequest

    # Given a job created for one uploaded version of a file (as the upload trigger creates it)
    image_url = importer.upload(DISK, "replaced.raw")
    bucket, key = image_url.split(":", 1)
    uploaded_etag = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ETag"]
    # and the file replaced by another upload before that job's import reads it
    importer.upload(b"\x33" * 700_416, "replaced.raw")
    request = CreateDataImageRequest(name="data-disk-1", image_url=image_url, min_disk=40)

    # When the job's import runs
    job_id = start_import(request, "0123456789ab", Stores(), origin="upload", source_etag=uploaded_etag).job_id
    job = importer.wait_for_end(job_id)

    # Then it fails, saying the file was replaced, and nothing of the newer file became its image
    reason = assert_failed_cleanly(importer, job, "IMG.0057")
    assert "replaced" in reason


def test_an_unexpected_error_fails_with_img_1075_and_a_short_reason(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Fetch that breaks in a way nobody planned for
    from diskport.pipeline import fetch

    def broken_plan(*_: Any, **__: Any) -> Any:
        raise RuntimeError("internal detail /var/task/secret.py line 12")

    monkeypatch.setattr(fetch, "plan_chunks", broken_plan)
    job = importer.import_file(DISK, "disk.raw")
    reason = assert_failed_cleanly(importer, job, "IMG.1075")
    assert "secret" not in reason and "RuntimeError" in reason
    assert len(reason) < 300


def test_an_execution_that_timed_out_is_ended_by_the_eventbridge_rule(without_default_amis: None, stack: Any) -> None:
    # Given an import stuck after Fetch: job RUNNING, image saving, snapshot pending, plan in the work bucket
    bucket = stack.local.physical_name("WatchedBucket")
    boto3.client("s3").put_object(Bucket=bucket, Key="disk.raw", Body=DISK)
    answer = stack.call_api(
        "POST",
        "/v1/cloudimages/dataimages/action",
        body={"name": "stuck", "image_url": f"{bucket}:disk.raw", "min_disk": 40},
    )
    job_id = answer.body["job_id"]
    JobStore().mark_running(job_id)
    invoke(stack, "FetchSourceFunction", {"job_id": job_id})
    assert boto3.client("ec2").describe_snapshots(Filters=[{"Name": "tag:diskport:job-id", "Values": [job_id]}])[
        "Snapshots"
    ]

    # When the rule on executions that ended badly hands MarkFailed the event (moto emits no EventBridge events)
    invoke(stack, "MarkFailedFunction", execution_status_change(stack, job_id, "TIMED_OUT"))

    # Then the job is FAIL saying why, the image killed, the snapshot and the work files gone
    job = stack.call_api("GET", f"/v1/cloudimages/job/{job_id}").body
    assert job["status"] == "FAIL" and job["error_code"] == "IMG.1075"
    assert "longer than" in job["fail_reason"]
    (image,) = stack.call_api("GET", "/v2/cloudimages", query={"name": "stuck"}).body["images"]
    assert image["status"] == "killed"
    ec2 = boto3.client("ec2")
    assert ec2.describe_snapshots(Filters=[{"Name": "tag:diskport:job-id", "Values": [job_id]}])["Snapshots"] == []
    work_bucket = stack.local.physical_name("WorkBucket")
    assert boto3.client("s3").list_objects_v2(Bucket=work_bucket).get("Contents", []) == []


def test_the_eventbridge_rule_leaves_a_job_that_succeeded_alone(importer: Any) -> None:
    # Given a finished import
    job = importer.import_file(DISK, "disk.raw")
    assert job["status"] == "SUCCESS"
    # When a late "FAILED" event arrives for its execution
    invoke(importer.stack, "MarkFailedFunction", execution_status_change(importer.stack, job["job_id"], "FAILED"))
    # Then the job, its image and its snapshot are untouched
    assert importer.job(job["job_id"])["status"] == "SUCCESS"
    assert importer.image(job["entities"]["image_id"])["status"] == "active"
    assert len(importer.snapshot_ids()) == 1


def invoke(stack: Any, function: str, event: dict[str, Any]) -> Any:
    return stack.lambdas.handler(function)(event, stack.lambdas.context(function))


def execution_status_change(stack: Any, job_id: str, status: str) -> dict[str, Any]:
    """`events/mark_failed_execution_timed_out.json` (also for `sam local invoke`), for this job and status."""
    event_text = (EVENTS / "mark_failed_execution_timed_out.json").read_text()
    event: dict[str, Any] = json.loads(event_text.replace(EXAMPLE_JOB_ID, job_id))
    event["detail"]["status"] = status
    return event


def test_a_job_failed_by_the_safety_net_mid_import_gets_no_active_image(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the EventBridge rule ends the job while its chunks are being converted
    from diskport.pipeline import convert

    original_finish = convert.ChunkLeases.finish

    # (as a chunk finishes, before the last one's worker could go on to seal the snapshot)
    def finish_then_end_the_job(leases: Any) -> int:
        chunks_finished = original_finish(leases)
        with importer.stack.lambdas.acting_as("MarkFailedFunction"):  # what the rule's target does
            JobStore().mark_failed(leases._job_id, error_code="IMG.1075", fail_reason="The import was stopped.")
        return chunks_finished

    monkeypatch.setattr(convert.ChunkLeases, "finish", finish_then_end_the_job)
    # When the import goes on
    job = importer.import_file(DISK, "disk.raw")
    # Then the job keeps the safety net's reason, and the rest of the import is undone, not registered
    assert job["fail_reason"] == "The import was stopped."
    assert_failed_cleanly(importer, job, "IMG.1075")
