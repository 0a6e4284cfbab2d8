"""Convert streams a chunk: a few blocks in flight to EBS at once, never the chunk in memory.

The snapshot here is an in-memory fake behind SnapshotStore's one method that Convert uses, slow enough that the
engine could run far ahead of the writers if nothing held it back.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import boto3
import pytest
from diskport.engine import BLOCK_SIZE, Block
from diskport.pipeline import convert
from diskport.settings import get_settings
from diskport.stores import Stores
from diskport.stores.jobs import JobStore
from diskport.stores.source_objects import SourceObject
from diskport.stores.work_files import Chunk, ImportManifest, WorkFiles

from tests.support.invocations import most_at_once

BLOCKS = 48


class SlowSnapshot:
    """Blocks written to one snapshot, each write taking a while; records how many were under way at once."""

    def __init__(self, seconds_per_write: float) -> None:
        self.blocks: dict[int, bytes] = {}
        self.seconds_per_write = seconds_per_write
        self.writing = 0
        self.most_writing = 0
        self._lock = threading.Lock()

    def put_block(self, snapshot_id: str, block: Block) -> None:
        with self._lock:
            self.writing += 1
            self.most_writing = max(self.most_writing, self.writing)
        time.sleep(self.seconds_per_write)
        with self._lock:
            self.blocks[block.index] = block.data
            self.writing -= 1


def test_a_chunk_is_written_by_several_writers_with_only_a_few_blocks_held_at_once(
    stack: Any, monkeypatch: Any
) -> None:
    # Given a 24 MiB raw disk of data in S3, the manifest Fetch would have written, and a RUNNING job
    disk = os.urandom(BLOCKS * BLOCK_SIZE)
    bucket = stack.local.physical_name("WatchedBucket")
    etag = boto3.client("s3").put_object(Bucket=bucket, Key="dense.raw", Body=disk)["ETag"]
    job_id = stack.call_api(
        "POST",
        "/v1/cloudimages/dataimages/action",
        body={"name": "d", "image_url": f"{bucket}:dense.raw", "min_disk": 40},
    ).body["job_id"]
    JobStore().mark_running(job_id)
    chunk = Chunk(index=0, start=0, end=len(disk), allocated_bytes=len(disk))
    WorkFiles(job_id).save_manifest(
        ImportManifest(
            job_id=job_id,
            project_id="0123456789ab",
            image_id="image",
            image_name="d",
            source=SourceObject(bucket=bucket, key="dense.raw", etag=etag, size=len(disk)),
            source_format="raw",
            virtual_size=len(disk),
            min_disk=40,
            snapshot_id="snap-0",
            chunk_count=1,
            allocated_bytes=len(disk),
        )
    )
    # And a count of the blocks the engine has handed over but that are not written yet
    monkeypatch.setenv("SNAPSHOT_PUTS_PER_SECOND", "100000")
    get_settings.cache_clear()
    snapshot = SlowSnapshot(seconds_per_write=0.01)
    produced = [0]
    held = [0]
    original_open_disk = convert.open_disk

    def counting_open_disk(source: Any, **options: Any) -> Any:
        disk_image = original_open_disk(source, **options)
        original_iter_blocks = disk_image.iter_blocks

        def iter_blocks(start: int, end: int) -> Any:
            for block in original_iter_blocks(start, end):
                produced[0] += 1
                held[0] = max(held[0], produced[0] - len(snapshot.blocks))
                yield block

        disk_image.iter_blocks = iter_blocks
        return disk_image

    monkeypatch.setattr(convert, "open_disk", counting_open_disk)

    # When the chunk is converted
    result = convert.convert_chunk(job_id, chunk, Stores(snapshots=snapshot))

    # Then every block reached the snapshot intact, several writes ran at once, and few blocks were ever held
    writers = get_settings().writers_per_chunk
    assert result.blocks_written == BLOCKS
    assert snapshot.blocks == {index: disk[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE] for index in range(BLOCKS)}
    assert 2 <= snapshot.most_writing <= writers
    assert held[0] <= 2 * writers + 1
    # And the chunk's checksums are saved for Register, its progress counted
    assert len(WorkFiles(job_id).chunk_checksums(0)) == BLOCKS
    assert JobStore().get(job_id).bytes_done == len(disk)  # type: ignore[union-attr]


def _dense_chunk_job(stack: Any, blocks: int) -> tuple[str, Chunk, bytes]:
    """A RUNNING job whose manifest names a raw disk of `blocks` random blocks, and the one chunk covering it."""
    disk = os.urandom(blocks * BLOCK_SIZE)
    bucket = stack.local.physical_name("WatchedBucket")
    etag = boto3.client("s3").put_object(Bucket=bucket, Key="dense.raw", Body=disk)["ETag"]
    job_id = stack.call_api(
        "POST",
        "/v1/cloudimages/dataimages/action",
        body={"name": "d", "image_url": f"{bucket}:dense.raw", "min_disk": 40},
    ).body["job_id"]
    JobStore().mark_running(job_id)
    JobStore().set_plan(job_id, image_id="image", bytes_total=len(disk))
    WorkFiles(job_id).save_manifest(
        ImportManifest(
            job_id=job_id,
            project_id="0123456789ab",
            image_id="image",
            image_name="d",
            source=SourceObject(bucket=bucket, key="dense.raw", etag=etag, size=len(disk)),
            source_format="raw",
            virtual_size=len(disk),
            min_disk=40,
            snapshot_id="snap-0",
            chunk_count=1,
            allocated_bytes=len(disk),
        )
    )
    return job_id, Chunk(index=0, start=0, end=len(disk), allocated_bytes=len(disk)), disk


def test_a_chunks_progress_moves_while_it_is_written_and_counts_once_when_it_is_rerun(
    stack: Any, monkeypatch: Any
) -> None:
    # Given a chunk of 48 blocks written at about 60 blocks/s, its worker renewing its lease every 0.1 s
    job_id, chunk, disk = _dense_chunk_job(stack, BLOCKS)
    monkeypatch.setenv("SNAPSHOT_PUTS_PER_SECOND", "60")
    monkeypatch.setenv("RENEW_SECONDS", "0.1")
    get_settings.cache_clear()
    snapshot = SlowSnapshot(seconds_per_write=0.001)
    seen: list[float] = []
    done = threading.Event()

    def watch_progress() -> None:
        while not done.is_set():
            seen.append(JobStore().get(job_id).process_percent)  # type: ignore[union-attr]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_progress)
    watcher.start()
    # When the chunk is converted
    try:
        convert.convert_chunk(job_id, chunk, Stores(snapshots=snapshot))
    finally:
        done.set()
        watcher.join()
    # Then the job's progress took several values between 0 and 100 on the way, and ends at all of the data
    assert len({percent for percent in seen if 0 < percent < 100}) >= 3, seen
    assert JobStore().get(job_id).bytes_done == len(disk)  # type: ignore[union-attr]
    # And running the chunk again (a Lambda retry) counts nothing twice
    convert.convert_chunk(job_id, chunk, Stores(snapshots=snapshot))
    assert JobStore().get(job_id).bytes_done == len(disk)  # type: ignore[union-attr]
    # And the worker's lease is gone, so the others may take its share
    stored = stack.table("JobsTable").get_item(Key={"job_id": job_id})["Item"]
    assert stored["writers"] == {}


# One worker beside Fetch: the Map runs the other seven chunks.
@pytest.mark.parametrize("stack_parameters", [{"WorkersBesideFetch": "1"}])
def test_the_convert_map_runs_several_chunks_at_once_in_this_process(importer: Any) -> None:
    # Given a dense disk of eight chunks (two blocks each), one taken by the worker beside Fetch
    disk = bytes(range(256)) * (16 * BLOCK_SIZE // 256)

    # When it is imported by the in-process runtime
    job = importer.import_file(disk, "dense.raw")

    # Then every chunk was converted, and chunks of the one function ran at the same moment (no lock between them)
    assert job["status"] == "SUCCESS", job
    invocations = importer.stack.lambdas.invocations
    assert len([run for run in invocations if run.function == "ConvertChunkFunction"]) == 8
    assert most_at_once(invocations, "ConvertChunkFunction") >= 2
