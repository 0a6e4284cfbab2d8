"""Register: seal the snapshot, then make the image active and end the job SUCCESS, together.

The LINEAR aggregate checksum is folded chunk by chunk from the checksums the chunks saved, in block order,
so EBS itself confirms it received exactly the blocks the engine produced. The chunks' checksum files are read
several at once (each read is an S3 round trip, and the import waits for all of them before its snapshot is sealed),
and folded in chunk order as they arrive. Re-running the step after the
snapshot was sealed (the job records it, since EBS answers `pending` until it has finished completing) skips
straight to waiting and recording: CompleteSnapshot is sent once.
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
    settings = stores.settings
    jobs, images, snapshots = stores.jobs, stores.images, stores.snapshots
    work_files = stores.work_files(job_id)

    manifest = work_files.manifest()
    # A job that ended meanwhile (the EventBridge safety net, a stopped execution) must not get an active image.
    if not jobs.set_task(job_id, "register"):
        raise ImportFailedError(f"Job {job_id} has already ended; its image is not registered.")
    chunk_failure = work_files.recorded_failure()
    if chunk_failure is not None:
        # A Map that tolerates (or, in some interpreters, overlooks) a failed chunk must not seal a partial disk.
        raise DiskportError(chunk_failure.reason, code=chunk_failure.code)
    contents = snapshot_contents(manifest, work_files)
    job = jobs.get(job_id)
    already_sealed = job is not None and job.snapshot_sealed
    if not already_sealed and snapshots.state(manifest.snapshot_id) != SNAPSHOT_COMPLETED:
        snapshots.complete(
            manifest.snapshot_id,
            changed_blocks_count=contents.changed_blocks_count,
            aggregate_checksum=contents.aggregate_checksum,
        )
        jobs.mark_snapshot_sealed(job_id)
    snapshots.wait_until_completed(manifest.snapshot_id, timeout_seconds=settings.snapshot_wait_seconds)

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
    work_files.delete_all()
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
