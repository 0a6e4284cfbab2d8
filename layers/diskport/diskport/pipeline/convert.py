"""Convert: one chunk of the virtual disk into snapshot blocks.

Blocks stream from the engine (reads pinned to the source's ETag, all-zero blocks skipped) to writer threads; at
most `2 * writers_per_chunk` blocks of 512 KiB are held at once, whatever the chunk's size.

Request rate: EBS accepts at most 1,000 PutSnapshotBlock requests per second per snapshot, shared by every
worker of the Map, and by default 1,000 per account, shared by every import. Every `renew_seconds` the worker
renews its lease (`rate_control`, `stores.write_leases`): the same write counts the chunk's progress so far, and its
answer tells the worker how many others run, so it takes its share of what they leave free. A throttling answer
slows the worker down (it recovers afterwards) and the block is sent again; it never fails the chunk. The writer
threads only hide each request's latency: at ~100 ms each, 32 in flight carry up to ~320 requests/s, more than
one function's ~75 MiB/s of network.

Re-running a chunk (a Lambda retry) writes the same blocks with the same data at the same indexes, which
leaves the snapshot as it was, and counts the chunk's progress only once; a chunk a run has finished is not
written again.

The worker whose chunk is the import's last to finish (the job item counts finished chunks) seals the snapshot
and registers the image itself (`register.finish_import`), rather than leaving it to the Register state a Lambda
start later; whatever stops it there is left to the Register state and never fails the chunk.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from pydantic import BaseModel

from diskport.engine import BLOCK_SIZE, Block, open_disk
from diskport.errors import (
    DiskportError,
    ImportFailedError,
    PlanNotReadyError,
    RetryableStepError,
    StepFailure,
    engine_errors_as_ims,
)
from diskport.observability import logger
from diskport.pipeline.rate_control import QUOTA_MARGIN, Limits, WriteRate
from diskport.pipeline.register import finish_import
from diskport.pipeline.step_errors import as_step_error
from diskport.stores import Stores
from diskport.stores.jobs import JobStore
from diskport.stores.snapshots import BlockWriter, SnapshotThrottledError
from diskport.stores.work_files import BlockChecksum, Chunk, ImportManifest, WorkFiles
from diskport.stores.write_leases import AccountLeases, leases_of

# How often a worker started beside Fetch looks for its chunk on the job item (a consistent read each time).
FIRST_CHUNKS_POLL_SECONDS = 0.05

# What a worker started beside Fetch keeps of its time when it gives up waiting for the plan (and lets the state
# machine start another).
PLAN_WAIT_RESERVE_SECONDS = 60.0

# What the worker that finishes the import keeps of its time for answering: it waits for EBS to complete the
# snapshot no longer than its remaining time less this, and leaves the rest of the waiting to the Register state.
FINISH_RESERVE_SECONDS = 60.0


class ConvertResult(BaseModel):
    blocks_written: int
    bytes_skipped: int
    source_reads: int
    throttled_requests: int = 0


def convert_first_chunk(
    job_id: str, slot: int, stores: Stores, *, seconds_left: Callable[[], float] = lambda: math.inf
) -> ConvertResult | None:
    """As a worker started beside Fetch (`slot` 1, 2, ...): wait for Fetch to publish the plan's first chunks, then
    convert the `slot`-th; None when the plan has fewer, or the job ends first (Fetch refused the file).

    PlanNotReadyError when the invocation would run out of time waiting: the state machine starts another.
    """
    while True:
        published = stores.jobs.first_chunks(job_id)
        if published.ended:
            return None
        if published.chunks is not None:
            break
        if seconds_left() < PLAN_WAIT_RESERVE_SECONDS:
            raise PlanNotReadyError(f"The plan of job {job_id} was not ready in this invocation's time.")
        time.sleep(FIRST_CHUNKS_POLL_SECONDS)
    if slot > len(published.chunks):
        return None
    return convert_chunk(job_id, published.chunks[slot - 1], stores, seconds_left=seconds_left)


def convert_chunk(
    job_id: str, chunk: Chunk, stores: Stores, *, seconds_left: Callable[[], float] = lambda: math.inf
) -> ConvertResult:
    """Write the chunk's blocks; the last chunk's worker then finishes the import. `seconds_left`: the
    invocation's remaining time."""
    work_files = stores.work_files(job_id)
    with ThreadPoolExecutor(1, thread_name_prefix="diskport-manifest") as pool:
        # The manifest's S3 round trip runs beside the job item's two (which stay on this thread, as resources must).
        reading = pool.submit(work_files.manifest)
        if not stores.jobs.set_task(job_id, "convert"):
            ended = stores.jobs.get(job_id)
            if ended is not None and ended.status == "SUCCESS":
                # A re-run after the last chunk's worker finished the import: every block is in the sealed snapshot.
                return ConvertResult(blocks_written=0, bytes_skipped=0, source_reads=0)
            raise ImportFailedError(f"Job {job_id} has already ended; its chunks are not converted any more.")
        record = stores.jobs.chunk_record(job_id, chunk.chunk_id)
        try:
            manifest = reading.result()
        except Exception as error:
            _record_failure(work_files, error)
            raise
    if record.finished:
        # A re-run of a chunk a run finished (its answer was lost, or it timed out finishing the import).
        result, chunks_finished = (
            ConvertResult(blocks_written=0, bytes_skipped=0, source_reads=0),
            record.chunks_finished,
        )
    else:
        try:
            result, chunks_finished = _convert(job_id, chunk, stores, work_files, manifest, record.counted_bytes)
        except Exception as error:
            _record_failure(work_files, error)
            raise
    if chunks_finished >= manifest.chunk_count:
        _finish_import_now(job_id, manifest, stores, seconds_left)
    return result


def _record_failure(work_files: WorkFiles, error: Exception) -> None:
    """A failed Distributed Map reports only that a child failed: keep the reason for MarkFailed."""
    step_error = as_step_error(error)
    if isinstance(step_error, DiskportError) and not isinstance(step_error, RetryableStepError):
        work_files.record_failure(StepFailure(step_error.code, step_error.reason))


def _finish_import_now(
    job_id: str, manifest: ImportManifest, stores: Stores, seconds_left: Callable[[], float]
) -> None:
    """Seal and register the import whose last chunk this worker has just finished, when there is time to."""
    wait_seconds = min(stores.settings.snapshot_wait_seconds, seconds_left() - FINISH_RESERVE_SECONDS)
    if wait_seconds < 0:
        return
    try:
        finish_import(job_id, manifest, stores, wait_seconds=wait_seconds)
    except Exception:
        # The Register state, which runs after the Map in any case, goes on from here and reports what fails.
        logger.warning("The last chunk's worker left finishing the import to Register", exc_info=True)
    else:
        logger.info("Import finished by its last chunk's worker", extra={"image_id": manifest.image_id})


def _convert(
    job_id: str, chunk: Chunk, stores: Stores, work_files: WorkFiles, manifest: ImportManifest, counted_bytes: int
) -> tuple[ConvertResult, int]:
    """The chunk's blocks written and its checksums saved; and how many of the import's chunks have finished."""
    settings = stores.settings
    jobs = stores.jobs
    snapshots: BlockWriter = stores.snapshots
    reader = stores.sources.reader(manifest.source)
    rate = WriteRate(
        time.time,
        holder=chunk.chunk_id,
        import_id=job_id,
        limits=Limits(snapshot=settings.snapshot_puts_per_second, account=settings.account_put_quota * QUOTA_MARGIN),
        planned_workers=min(settings.convert_concurrency, manifest.chunk_count),
        lease_seconds=3 * settings.renew_seconds,
        blocks=-(-chunk.allocated_bytes // BLOCK_SIZE),
        planned_at=manifest.planned_at,
    )
    leases = ChunkLeases(job_id, chunk, jobs, rate, stores.account_leases, counted_bytes)
    writers = settings.writers_per_chunk

    def write(block: Block) -> None:
        while True:
            wait = rate.wait_seconds()
            if wait is None:
                time.sleep(0.05)
                continue
            if wait > 0:
                time.sleep(wait)
            try:
                snapshots.put_block(manifest.snapshot_id, block)
                return
            except SnapshotThrottledError:
                rate.throttled()

    checksums: list[BlockChecksum] = []
    with (
        leases.renewing(settings.renew_seconds),
        engine_errors_as_ims(),
        open_disk(reader, ova_disk=manifest.ova_disk) as disk,
        ThreadPoolExecutor(writers, thread_name_prefix="diskport-put") as pool,
    ):
        in_flight: deque[tuple[Future[None], int]] = deque()
        for block in disk.iter_blocks(chunk.start, chunk.end):
            in_flight.append((pool.submit(write, block), (block.index + 1) * BLOCK_SIZE))
            checksums.append(BlockChecksum(index=block.index, checksum=block.checksum))
            if len(in_flight) >= 2 * writers:
                written, position = in_flight.popleft()
                written.result()
                leases.written_up_to(position)
        while in_flight:
            written, position = in_flight.popleft()
            written.result()
            leases.written_up_to(position)

    work_files.save_chunk_checksums(chunk, checksums)
    chunks_finished = leases.finish()
    result = ConvertResult(
        blocks_written=len(checksums),
        bytes_skipped=max(0, chunk.end - chunk.start - len(checksums) * BLOCK_SIZE),
        source_reads=reader.get_count,
        throttled_requests=rate.throttles,
    )
    return result, chunks_finished


class ChunkLeases:
    """A chunk's progress and its worker's leases, renewed together every few seconds by a background thread."""

    def __init__(
        self,
        job_id: str,
        chunk: Chunk,
        jobs: JobStore,
        rate: WriteRate,
        account_leases: AccountLeases | None,
        counted_bytes: int,
    ) -> None:
        self._job_id = job_id
        self._chunk = chunk
        self._jobs = jobs
        self._rate = rate
        self._account = account_leases
        self._position = chunk.start
        # What earlier runs of the chunk counted: this one goes on from there.
        self._counted = counted_bytes
        self._lock = threading.Lock()

    def written_up_to(self, position: int) -> None:
        """Every block of the chunk before `position` (a byte offset of the disk) is in the snapshot."""
        self._position = max(self._position, position)

    def bytes_done(self) -> int:
        """The chunk's allocated bytes, in proportion to how far through its range the written blocks reach."""
        span = max(1, self._chunk.end - self._chunk.start)
        reached = min(span, self._position - self._chunk.start)
        return self._chunk.allocated_bytes * reached // span

    def renew(self, *, final: bool = False) -> int:
        """Renew the lease and count the progress (`final`: the chunk is finished); answers how many of the
        import's chunks have finished."""
        with self._lock:
            claim = 0.0 if final else self._rate.claim()
            lease = None if final else self._rate.worker_lease(claim).to_item()
            done = self._chunk.allocated_bytes if final else self.bytes_done()
            record = self._jobs.renew_chunk(
                self._job_id,
                self._chunk.chunk_id,
                lease=lease,
                counted_bytes=self._counted,
                bytes_done=done,
                finished=final,
            )
            self._counted, writers = record.counted_bytes, record.writers
            now = time.time()
            if final:
                still_writing = [held for held in leases_of(writers).values() if held.expires_at > now]
                if self._account is not None and not still_writing:
                    # The import's last worker: the other imports of the account may take its share at once.
                    self._account.renew(self._job_id, None, now=now)
                return record.chunks_finished
            account = None
            if self._account is not None:
                account = self._account.renew(self._job_id, self._rate.import_lease(), now=time.time())
            self._rate.renewed(leases_of(writers), account)
            return record.chunks_finished

    @contextmanager
    def renewing(self, every_seconds: float) -> Iterator[None]:
        """Renew at once (the first requests wait for it), then every `every_seconds` until the block ends."""
        self.renew()
        stop = threading.Event()

        def keep_renewing() -> None:
            while not stop.wait(self._rate.seconds_to_next_renewal(every_seconds)):
                try:
                    self.renew()
                except Exception:
                    logger.warning("Could not renew the chunk's lease", exc_info=True)

        thread = threading.Thread(target=keep_renewing, name="diskport-lease", daemon=True)
        thread.start()
        try:
            yield
        except BaseException:
            stop.set()
            thread.join()
            self._release_after_failure()
            raise
        finally:
            stop.set()
            thread.join()

    def _release_after_failure(self) -> None:
        """Give the share back at once when the chunk failed (it is retried later), keeping the progress made."""
        try:
            with self._lock:
                self._counted = self._jobs.renew_chunk(
                    self._job_id,
                    self._chunk.chunk_id,
                    lease=None,
                    counted_bytes=self._counted,
                    bytes_done=self.bytes_done(),
                ).counted_bytes
        except Exception:
            logger.warning("Could not give back the failed chunk's lease; it expires by itself", exc_info=True)

    def finish(self) -> int:
        """Count the whole chunk as finished and give its share of the quota back to the workers still running;
        answers how many of the import's chunks have finished."""
        return self.renew(final=True)
