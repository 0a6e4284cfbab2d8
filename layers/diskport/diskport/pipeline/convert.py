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
leaves the snapshot as it was, and counts the chunk's progress only once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from pydantic import BaseModel

from diskport.engine import BLOCK_SIZE, Block, open_disk
from diskport.errors import DiskportError, ImportFailedError, RetryableStepError, StepFailure, engine_errors_as_ims
from diskport.observability import logger
from diskport.pipeline.rate_control import QUOTA_MARGIN, Limits, WriteRate
from diskport.pipeline.step_errors import as_step_error
from diskport.stores import Stores
from diskport.stores.jobs import JobStore
from diskport.stores.snapshots import BlockWriter, SnapshotThrottledError
from diskport.stores.work_files import BlockChecksum, Chunk, WorkFiles
from diskport.stores.write_leases import AccountLeases, leases_of


class ConvertResult(BaseModel):
    blocks_written: int
    bytes_skipped: int
    source_reads: int
    throttled_requests: int = 0


def convert_chunk(job_id: str, chunk: Chunk, stores: Stores) -> ConvertResult:
    work_files = stores.work_files(job_id)
    if not stores.jobs.set_task(job_id, "convert"):
        raise ImportFailedError(f"Job {job_id} has already ended; its chunks are not converted any more.")
    try:
        return _convert(job_id, chunk, stores, work_files)
    except Exception as error:
        # A failed Distributed Map reports only that a child failed: keep the reason for MarkFailed.
        step_error = as_step_error(error)
        if isinstance(step_error, DiskportError) and not isinstance(step_error, RetryableStepError):
            work_files.record_failure(StepFailure(step_error.code, step_error.reason))
        raise


def _convert(job_id: str, chunk: Chunk, stores: Stores, work_files: WorkFiles) -> ConvertResult:
    settings = stores.settings
    jobs = stores.jobs
    snapshots: BlockWriter = stores.snapshots
    manifest = work_files.manifest()
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
    leases = ChunkLeases(job_id, chunk, jobs, rate, stores.account_leases)
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
    leases.finish()
    return ConvertResult(
        blocks_written=len(checksums),
        bytes_skipped=max(0, chunk.end - chunk.start - len(checksums) * BLOCK_SIZE),
        source_reads=reader.get_count,
        throttled_requests=rate.throttles,
    )


class ChunkLeases:
    """A chunk's progress and its worker's leases, renewed together every few seconds by a background thread."""

    def __init__(
        self, job_id: str, chunk: Chunk, jobs: JobStore, rate: WriteRate, account_leases: AccountLeases | None
    ) -> None:
        self._job_id = job_id
        self._chunk = chunk
        self._jobs = jobs
        self._rate = rate
        self._account = account_leases
        self._position = chunk.start
        self._counted = jobs.chunk_bytes_done(job_id, chunk.chunk_id)
        self._lock = threading.Lock()

    def written_up_to(self, position: int) -> None:
        """Every block of the chunk before `position` (a byte offset of the disk) is in the snapshot."""
        self._position = max(self._position, position)

    def bytes_done(self) -> int:
        """The chunk's allocated bytes, in proportion to how far through its range the written blocks reach."""
        span = max(1, self._chunk.end - self._chunk.start)
        reached = min(span, self._position - self._chunk.start)
        return self._chunk.allocated_bytes * reached // span

    def renew(self, *, final: bool = False) -> None:
        with self._lock:
            claim = 0.0 if final else self._rate.claim()
            lease = None if final else self._rate.worker_lease(claim).to_item()
            done = self._chunk.allocated_bytes if final else self.bytes_done()
            self._counted, writers = self._jobs.renew_chunk(
                self._job_id, self._chunk.chunk_id, lease=lease, counted_bytes=self._counted, bytes_done=done
            )
            now = time.time()
            if final:
                still_writing = [held for held in leases_of(writers).values() if held.expires_at > now]
                if self._account is not None and not still_writing:
                    # The import's last worker: the other imports of the account may take its share at once.
                    self._account.renew(self._job_id, None, now=now)
                return
            account = None
            if self._account is not None:
                account = self._account.renew(self._job_id, self._rate.import_lease(), now=time.time())
            self._rate.renewed(leases_of(writers), account)

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
                self._counted, _ = self._jobs.renew_chunk(
                    self._job_id,
                    self._chunk.chunk_id,
                    lease=None,
                    counted_bytes=self._counted,
                    bytes_done=self.bytes_done(),
                )
        except Exception:
            logger.warning("Could not give back the failed chunk's lease; it expires by itself", exc_info=True)

    def finish(self) -> None:
        """Count the whole chunk and give its share of the quota back to the workers still running."""
        self.renew(final=True)
