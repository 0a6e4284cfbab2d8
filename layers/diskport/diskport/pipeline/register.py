"""Register: seal the snapshot, then make the image active and end the job SUCCESS, together.

The LINEAR aggregate checksum is folded chunk by chunk from the checksums the chunks saved, in block order,
so EBS itself confirms it received exactly the blocks the engine produced. The chunks' checksum files are read
several at once (each read is an S3 round trip, and the import waits for all of them before its snapshot is
sealed), and folded in chunk order as they arrive.

The worker of an import's last chunk normally does all this itself, the moment its chunk is in
(`finish_import`, called from convert): the Register state, which follows the Map in any case, then finds the
job SUCCESS and only removes the work files. When that worker could not finish (its time ran short, EBS or
DynamoDB failed it), the Register state does the same work again from where it stopped: the job records that
the snapshot was sealed (EBS answers `pending` until it has finished completing), so CompleteSnapshot is sent
once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from pydantic import BaseModel

from diskport.errors import DiskportError, ImportFailedError
from diskport.stores import Stores
from diskport.stores.snapshots import SNAPSHOT_COMPLETED, LinearChecksum
from diskport.stores.work_files import BlockChecksum, ImportManifest, WorkFiles

# Chunk checksum files read at once: S3 serves them in parallel, and botocore's client keeps 10 connections.
CHECKSUM_READS_AT_ONCE = 8


class RegisterResult(BaseModel):
    image_id: str


class SnapshotContents(BaseModel):
    changed_blocks_count: int
    aggregate_checksum: str


def register_image(job_id: str, stores: Stores) -> RegisterResult:
    """The Register state: the import made whole (if its last worker has not done it), then its work files gone."""
    work_files = stores.work_files(job_id)
    job = stores.jobs.get(job_id)
    if job is not None and job.status == "SUCCESS" and job.image_id is not None:
        # The last chunk's worker finished the import (or an earlier run of this step did).
        work_files.delete_all()
        return RegisterResult(image_id=job.image_id)
    result = finish_import(job_id, work_files.manifest(), stores, wait_seconds=stores.settings.snapshot_wait_seconds)
    work_files.delete_all()
    return result


def finish_import(job_id: str, manifest: ImportManifest, stores: Stores, *, wait_seconds: float) -> RegisterResult:
    """Seal the snapshot of an import whose chunks are all in, wait up to `wait_seconds` for EBS to complete it
    (SnapshotNotReadyError beyond), then end the job SUCCESS with its image active."""
    jobs, images, snapshots = stores.jobs, stores.images, stores.snapshots
    work_files = stores.work_files(job_id)
    # A job that ended meanwhile (the EventBridge safety net, a stopped execution) must not get an active image.
    if not jobs.set_task(job_id, "register"):
        raise ImportFailedError(f"Job {job_id} has already ended; its image is not registered.")
    with ThreadPoolExecutor(2, thread_name_prefix="diskport-register") as pool:
        # Round trips the fold of the checksums need not wait for (the job item's stays on this thread).
        recorded_failure = pool.submit(work_files.recorded_failure)
        snapshot_state = pool.submit(snapshots.state, manifest.snapshot_id)
        job = jobs.get(job_id)
        contents = snapshot_contents(manifest, work_files)
        chunk_failure = recorded_failure.result()
        state = snapshot_state.result()
    if chunk_failure is not None:
        # A Map that tolerates (or, in some interpreters, overlooks) a failed chunk must not seal a partial disk.
        raise DiskportError(chunk_failure.reason, code=chunk_failure.code)
    already_sealed = job is not None and job.snapshot_sealed
    if not already_sealed and state != SNAPSHOT_COMPLETED:
        snapshots.complete(
            manifest.snapshot_id,
            changed_blocks_count=contents.changed_blocks_count,
            aggregate_checksum=contents.aggregate_checksum,
        )
        jobs.mark_snapshot_sealed(job_id)
    snapshots.wait_until_completed(manifest.snapshot_id, timeout_seconds=wait_seconds)

    # The job ends SUCCESS and the image turns active in one transaction: an import stopped meanwhile (MarkFailed's
    # conditional FAIL wins) leaves neither, and a job never reads SUCCESS while its image is still `saving`.
    activation = images.activation(manifest.image_id, checksum=contents.aggregate_checksum, size=manifest.virtual_size)
    if not jobs.mark_succeeded(
        job_id, image_id=manifest.image_id, image_name=manifest.image_name, together_with=[activation]
    ):
        ended = jobs.get(job_id)
        # SUCCESS: a re-run of this step, whose first run already made the image active; it carries on.
        if ended is None or ended.status != "SUCCESS":
            raise ImportFailedError(f"Job {job_id} ended before its image was registered.")
    return RegisterResult(image_id=manifest.image_id)


def snapshot_contents(manifest: ImportManifest, work_files: WorkFiles) -> SnapshotContents:
    """The block count and LINEAR aggregate of what the chunks wrote, at most `CHECKSUM_READS_AT_ONCE` chunks'
    checksums held at once."""
    aggregate = LinearChecksum()
    previous_index = -1
    chunks_checksums: Iterator[list[BlockChecksum]] = read_ahead(
        work_files.chunk_checksums, range(manifest.chunk_count), at_once=CHECKSUM_READS_AT_ONCE
    )
    for checksums in chunks_checksums:
        for block in checksums:
            if block.index <= previous_index:
                raise ImportFailedError(f"Block {block.index} appears twice or out of order in the chunk checksums.")
            previous_index = block.index
            aggregate.add(block.checksum)
    return SnapshotContents(changed_blocks_count=aggregate.count, aggregate_checksum=aggregate.value())


def read_ahead[Read](read: Callable[[int], Read], indexes: Iterable[int], *, at_once: int) -> Iterator[Read]:
    """`read(index)` of each index, in order, with up to `at_once` reads under way while the caller takes the
    earlier ones; the first failed read raises, in its turn."""
    with ThreadPoolExecutor(max(1, at_once), thread_name_prefix="diskport-read-ahead") as pool:
        under_way: deque[Future[Read]] = deque()
        try:
            for index in indexes:
                under_way.append(pool.submit(read, index))
                if len(under_way) >= at_once:
                    yield under_way.popleft().result()
            while under_way:
                yield under_way.popleft().result()
        finally:
            for read_later in under_way:
                read_later.cancel()
