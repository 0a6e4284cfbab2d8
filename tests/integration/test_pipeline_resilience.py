"""Passing trouble does not change the result: throttling, a snapshot not ready yet, a chunk that fails once —
the state machine retries the step and the import still ends SUCCESS with exactly the same bytes."""

from __future__ import annotations

from typing import Any


def import_qcow2(importer: Any, image_files: dict[str, Any]) -> tuple[dict[str, Any], dict[int, bytes]]:
    image_file = image_files["qcow2"]
    job = importer.import_file(image_file.path, "disks/data1.qcow2")
    assert job["status"] == "SUCCESS", job
    return job, importer.snapshot_blocks(importer.image(job["entities"]["image_id"])["diskport_snapshot_id"])


def test_ebs_throttling_is_retried_and_the_snapshot_is_intact(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given EBS throttles PutSnapshotBlock three times beyond what the client absorbs
    refused = importer.fail_calls("ebs", "PutSnapshotBlock", "ThrottlingException", times=3)
    # When a qcow2 is imported
    _, blocks = import_qcow2(importer, image_files)
    # Then the convert worker slowed down and sent the refused blocks again, without failing its chunk (the state
    # machine had nothing to retry), and the snapshot holds the disk
    assert len(refused) == 3
    assert importer.retry_sleeps.seconds == []
    assert blocks == oracle_blocks(image_files["qcow2"].oracle)


def test_s3_slow_down_on_source_reads_is_retried(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given S3 answers SlowDown to the first two ranged reads of the source file
    refused = importer.fail_calls(
        "s3", "GetObject", "SlowDown", status=503, times=2, when=lambda params: "Range" in params["headers"]
    )
    _, blocks = import_qcow2(importer, image_files)
    assert len(refused) == 2
    assert importer.retry_sleeps.seconds
    assert blocks == oracle_blocks(image_files["qcow2"].oracle)


def test_writes_refused_while_the_new_snapshot_does_not_exist_yet_are_retried(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given EBS says "snapshot does not exist" to the first writes after StartSnapshot
    refused = importer.fail_calls("ebs", "PutSnapshotBlock", "ResourceNotFoundException", status=404, times=2)
    _, blocks = import_qcow2(importer, image_files)
    assert len(refused) == 2
    assert importer.retry_sleeps.seconds
    assert blocks == oracle_blocks(image_files["qcow2"].oracle)


def test_a_chunk_that_fails_once_midway_is_rerun_to_the_same_snapshot(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given one block write fails with a server error after other blocks of its chunk were written
    written: list[int] = []

    def after_a_few_writes(params: dict[str, Any]) -> bool:
        written.append(1)
        return len(written) == 4

    refused = importer.fail_calls(
        "ebs", "PutSnapshotBlock", "InternalServerException", status=500, when=after_a_few_writes
    )
    # When the import runs
    job, blocks = import_qcow2(importer, image_files)
    # Then the failed chunk was run again, counted once, and the snapshot is the same as without the failure
    assert refused == ["PutSnapshotBlock"]
    assert importer.retry_sleeps.seconds
    stored_job = importer.stack.table("JobsTable").get_item(Key={"job_id": job["job_id"]})["Item"]
    assert stored_job["bytes_done"] == stored_job["bytes_total"]
    assert blocks == oracle_blocks(image_files["qcow2"].oracle)
