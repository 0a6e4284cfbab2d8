"""The worker of an import's last chunk seals the snapshot and makes the image active; Register only follows up.

When that worker cannot (its role refused, too little time left), the Register state after the Map finishes the
import instead, sending CompleteSnapshot once in all.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from diskport.engine import BLOCK_SIZE
from diskport.pipeline import convert, register
from diskport.stores import Stores

from diskport_emulator import LocalStack
from tests.support.function_roles import without_action

# Eight chunks of two blocks each (the importer's CHUNK_BYTES), every block data.
DISK = bytes(range(256)) * (16 * BLOCK_SIZE // 256)


@pytest.fixture
def job_as_register_starts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(job status, image status) each time the Register state starts."""
    seen: list[tuple[str, str]] = []
    original = register.register_image

    def looking_first(job_id: str, stores: Stores) -> Any:
        job = stores.jobs.get(job_id)
        assert job is not None
        image = stores.images.get(job.image_id or "", job.project_id)
        seen.append((job.status, image.status if image is not None else "none"))
        return original(job_id, stores)

    monkeypatch.setattr(register, "register_image", looking_first)
    return seen


def test_the_last_chunks_worker_makes_the_image_active_before_register_starts(
    importer: Any, job_as_register_starts: list[tuple[str, str]], oracle_blocks: Any
) -> None:
    # Given a disk of eight chunks, and a record of every CompleteSnapshot sent
    completions = importer.watch_calls("ebs", "CompleteSnapshot")

    # When it is imported
    job = importer.import_file(DISK, "dense.raw")

    # Then the job succeeded, and was SUCCESS with its image active already when the Register state began
    assert job["status"] == "SUCCESS", job
    assert job_as_register_starts == [("SUCCESS", "active")]
    # And the snapshot was sealed once, with every block of the disk
    assert len(completions) == 1
    image = importer.image(job["entities"]["image_id"])
    blocks = importer.snapshot_blocks(image["diskport_snapshot_id"])
    assert blocks == {index: DISK[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE] for index in range(16)}
    # And Register still removed the import's work files
    assert importer.work_files() == []


@pytest.fixture
def local_stack(request: pytest.FixtureRequest) -> LocalStack:
    """The template; with the parameter "convert cannot seal", Convert's role lacks ebs:CompleteSnapshot."""
    local = LocalStack()
    if getattr(request, "param", None) == "convert cannot seal":
        return without_action(local, "ConvertChunkFunction", "ebs:CompleteSnapshot")
    return local


@pytest.mark.parametrize("local_stack", ["convert cannot seal"], indirect=True)
def test_a_last_worker_that_cannot_seal_leaves_the_import_to_register(
    importer: Any, job_as_register_starts: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    # Given Convert's role lacks ebs:CompleteSnapshot (see the fixture), and a record of every CompleteSnapshot
    completions = importer.watch_calls("ebs", "CompleteSnapshot")

    # When a disk of eight chunks is imported
    with caplog.at_level(logging.INFO):
        job = importer.import_file(DISK, "dense.raw")

    # Then the chunks did not fail: Register found the job still running, and finished it
    assert job["status"] == "SUCCESS", job
    assert job_as_register_starts == [("RUNNING", "saving")]
    assert importer.image(job["entities"]["image_id"])["status"] == "active"
    # And the worker said why it left it, and the snapshot reached EBS's CompleteSnapshot from both, sealed by one
    assert any("left finishing the import to Register" in record.getMessage() for record in caplog.records)
    assert len(completions) == 2
    assert importer.work_files() == []


def test_a_last_worker_short_of_time_leaves_the_import_to_register(
    importer: Any, job_as_register_starts: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given convert workers that keep back more time than their invocation has (900 s)
    monkeypatch.setattr(convert, "FINISH_RESERVE_SECONDS", 1000.0)
    completions = importer.watch_calls("ebs", "CompleteSnapshot")

    # When a disk of eight chunks is imported
    job = importer.import_file(DISK, "dense.raw")

    # Then the last worker did not start finishing it; Register did, with one CompleteSnapshot
    assert job["status"] == "SUCCESS", job
    assert job_as_register_starts == [("RUNNING", "saving")]
    assert len(completions) == 1


def test_a_finished_chunk_run_again_writes_no_block(importer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an import whose first chunk's worker is run twice (a Lambda retry after a lost answer)
    original = convert.convert_chunk
    results: list[convert.ConvertResult] = []

    def twice_for_the_first_chunk(job_id: str, chunk: Any, stores: Stores, **options: Any) -> Any:
        result = original(job_id, chunk, stores, **options)
        if chunk.index == 0:
            results.append(result)
            results.append(original(job_id, chunk, stores, **options))
        return result

    monkeypatch.setattr(convert, "convert_chunk", twice_for_the_first_chunk)
    puts = importer.watch_calls("ebs", "PutSnapshotBlock")

    # When a disk of eight chunks is imported
    job = importer.import_file(DISK, "dense.raw")

    # Then the second run wrote nothing, and every block was sent once
    assert job["status"] == "SUCCESS", job
    assert [result.blocks_written for result in results] == [2, 0]
    assert len(puts) == 16
