"""Convert: one chunk of the virtual disk into snapshot blocks.

Blocks stream from the engine (reads pinned to the source's ETag, all-zero blocks skipped) to a few writer
threads; at most `2 * writers_per_chunk` blocks of 512 KiB are held at once, whatever the chunk's size.

Request rate: EBS accepts at most 1,000 PutSnapshotBlock requests per second per snapshot, shared by every
worker of the Map. Each worker paces itself to `snapshot_puts_per_second / convert_concurrency` (900 / 16 ≈ 56
requests/s, about 28 MiB/s) so the whole Map stays under the quota however fast EBS answers; its
`writers_per_chunk` (8) threads only hide the latency of each request (8 in flight at ~140 ms each also
give ~56 requests/s). With the defaults one import writes at most ~450 MiB/s.

Re-running a chunk (a Lambda retry) writes the same blocks with the same data at the same indexes, which
leaves the snapshot as it was, and counts the chunk's progress only once.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from diskport import aws
from diskport.engine import BLOCK_SIZE, Block, S3ObjectSource, open_disk
from diskport.errors import DiskportError, ImportFailedError, RetryableStepError
from diskport.jobs import JobStore
from diskport.pipeline.chunk_plan import Chunk
from diskport.pipeline.snapshots import BlockWriter, RequestPacer, SnapshotStore
from diskport.pipeline.step_errors import StepFailure, as_step_error
from diskport.pipeline.work_files import BlockChecksum, WorkFiles
from diskport.settings import Settings, get_settings


class ConvertResult(BaseModel):
    blocks_written: int
    bytes_skipped: int
    source_reads: int


def convert_chunk(
    job_id: str,
    chunk: Chunk,
    *,
    jobs: JobStore | None = None,
    snapshots: BlockWriter | None = None,
    work_files: WorkFiles | None = None,
    s3_client: Any | None = None,
    settings: Settings | None = None,
) -> ConvertResult:
    settings = settings or get_settings()
    jobs = jobs or JobStore()
    work_files = work_files or WorkFiles(job_id)
    if not jobs.set_task(job_id, "convert"):
        raise ImportFailedError(f"Job {job_id} has already ended; its chunks are not converted any more.")
    try:
        return _convert(job_id, chunk, jobs, snapshots or SnapshotStore(), work_files, s3_client, settings)
    except Exception as error:
        # A failed Distributed Map reports only that a child failed: keep the reason for MarkFailed.
        step_error = as_step_error(error)
        if isinstance(step_error, DiskportError) and not isinstance(step_error, RetryableStepError):
            work_files.record_failure(StepFailure(step_error.code, step_error.reason))
        raise


def _convert(
    job_id: str,
    chunk: Chunk,
    jobs: JobStore,
    snapshots: BlockWriter,
    work_files: WorkFiles,
    s3_client: Any | None,
    settings: Settings,
) -> ConvertResult:
    manifest = work_files.manifest()
    source = manifest.source
    reader = S3ObjectSource(
        s3_client or aws.client("s3"),
        source.bucket,
        source.key,
        etag=source.etag,
        size=source.size,
        bucket_owner=source.bucket_owner,
    )
    pacer = RequestPacer(settings.snapshot_puts_per_second / settings.convert_concurrency)
    writers = settings.writers_per_chunk

    def write(block: Block) -> None:
        pacer.wait_for_slot()
        snapshots.put_block(manifest.snapshot_id, block)

    checksums: list[BlockChecksum] = []
    with (
        open_disk(reader, ova_disk=manifest.ova_disk) as disk,
        ThreadPoolExecutor(writers, thread_name_prefix="diskport-put") as pool,
    ):
        in_flight: deque[Future[None]] = deque()
        for block in disk.iter_blocks(chunk.start, chunk.end):
            in_flight.append(pool.submit(write, block))
            checksums.append(BlockChecksum(index=block.index, checksum=block.checksum))
            if len(in_flight) >= 2 * writers:
                in_flight.popleft().result()
        while in_flight:
            in_flight.popleft().result()

    work_files.save_chunk_checksums(chunk, checksums)
    jobs.add_progress(job_id, chunk.chunk_id, chunk.allocated_bytes)
    return ConvertResult(
        blocks_written=len(checksums),
        bytes_skipped=max(0, chunk.end - chunk.start - len(checksums) * BLOCK_SIZE),
        source_reads=reader.get_count,
    )
