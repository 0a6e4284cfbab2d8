"""Fetch: from a RUNNING job to an inspected file, an image record `saving`, a pending snapshot and a chunk plan.

Every check that can refuse the import (source file, content, disk size, encryption key) runs before the
snapshot is started; a refused import leaves its failed job and a `killed` image record (a project already at its
image quota gets no record at all). Re-running the step (a Lambda retry) finds the image record and the snapshot
it made the first time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from diskport.domain.requests import CreateDataImageRequest
from diskport.domain.source_buckets import bucket_owner_for
from diskport.engine import open_disk
from diskport.errors import DiskSizeError, ImportFailedError, engine_errors_as_ims
from diskport.pipeline.chunk_plan import INLINE_MAP_MAX_CHUNKS, allocated_blocks_bytes, chunk_size_for, plan_chunks
from diskport.stores import Stores
from diskport.stores.images import ImageRecord, image_id_for_job
from diskport.stores.jobs import Job, JobStore
from diskport.stores.source_objects import SourceObject, SourceObjects
from diskport.stores.work_files import Chunk, ImportManifest

GIB = 1024**3


class FetchResult(BaseModel):
    """What the state machine needs after the workers started beside Fetch: for a small plan, its chunks those
    workers did not take (the Inline Map runs over them); for a large one, where the Distributed Map reads it."""

    plan_key: str
    chunk_count: int
    chunks_left: int
    chunks: list[Chunk]


class InspectedSource(BaseModel):
    source: SourceObject
    format: str
    virtual_size: int
    allocated_ranges: list[tuple[int, int]]


def fetch_source(job_id: str, stores: Stores) -> FetchResult:
    settings = stores.settings
    jobs, images, snapshots = stores.jobs, stores.images, stores.snapshots
    work_files = stores.work_files(job_id)

    job = _running_job(jobs, job_id)
    request = CreateDataImageRequest.model_validate(job.request)
    # The image exists from here on, `queued`, so a refused file leaves a `killed` image the user can look at.
    # It takes its place in the project's quota in the same transaction (ImageQuotaError when none is left).
    image = images.create_or_get(_queued_image(job, request), quota=settings.max_private_images)

    inspected = inspect_source(
        request,
        stores.sources,
        expected_etag=job.source_etag,
        bucket_owner=bucket_owner_for(job.project_id, request.bucket, settings),
    )
    check_disk_size(request.min_disk, inspected.virtual_size)
    kms_key_arn = stores.encryption_keys.usable_arn(request.cmk_id) if request.cmk_id else None
    chunk_bytes = chunk_size_for(
        allocated_blocks_bytes(inspected.allocated_ranges, inspected.virtual_size),
        workers=settings.convert_concurrency,
        min_chunk_bytes=settings.min_chunk_bytes,
        max_chunk_bytes=settings.chunk_bytes,
    )
    chunks = plan_chunks(inspected.allocated_ranges, inspected.virtual_size, chunk_bytes)
    allocated_bytes = sum(chunk.allocated_bytes for chunk in chunks)

    tags = {**dict(request.tag_pairs()), "diskport:image-id": image.id, "diskport:job-id": job_id}
    # The snapshot starts while the job and image records take the plan: EBS's answer is the longer round trip.
    # (The DynamoDB writes stay on this thread; boto3 clients, not resources, are safe to share between threads.)
    with ThreadPoolExecutor(2, thread_name_prefix="diskport-fetch") as pool:
        started = None
        if image.snapshot_id is None:
            started = pool.submit(
                snapshots.start,
                volume_size_gib=request.min_disk,
                client_token=job_id,
                description=f"diskport image {image.id} ({request.name}) from {inspected.source.location}"[:255],
                tags=tags,
                kms_key_arn=kms_key_arn,
            )
        images.update(
            image.id,
            status="saving",
            image_size=str(inspected.source.size),
            source_format=inspected.format,
            virtual_size=inspected.virtual_size,
        )
        jobs.set_plan(job_id, image_id=image.id, bytes_total=allocated_bytes)
        snapshot_id = image.snapshot_id or (started.result() if started is not None else "")

        manifest = ImportManifest(
            job_id=job_id,
            project_id=job.project_id,
            image_id=image.id,
            image_name=request.name,
            source=inspected.source,
            source_format=inspected.format,
            virtual_size=inspected.virtual_size,
            min_disk=request.min_disk,
            snapshot_id=snapshot_id,
            chunk_count=len(chunks),
            allocated_bytes=allocated_bytes,
            ova_disk=request.ova_disk,
            planned_at=time.time(),
        )
        saved = [pool.submit(work_files.save_manifest, manifest)]
        inline = len(chunks) <= INLINE_MAP_MAX_CHUNKS
        if not inline:  # the Distributed Map's ItemReader reads it; an Inline Map gets the chunks in this answer
            saved.append(pool.submit(work_files.save_plan, chunks))
        if image.snapshot_id is None:
            # Recorded at once, so MarkFailed can delete the snapshot whatever fails next.
            images.update(image.id, snapshot_id=snapshot_id)
        for save in saved:
            save.result()
    # The workers started beside Fetch take the first chunks, one each, from the job item; the Convert map after
    # them takes the rest (an Inline Map from this answer, a Distributed Map from plan.json, skipping those).
    first = chunks[: min(settings.workers_beside_fetch, settings.convert_concurrency)]
    jobs.publish_first_chunks(job_id, first)
    return FetchResult(
        plan_key=work_files.plan_key,
        chunk_count=len(chunks),
        chunks_left=len(chunks) - len(first),
        chunks=chunks[len(first) :] if inline else [],
    )


def inspect_source(
    request: CreateDataImageRequest,
    sources: SourceObjects,
    *,
    expected_etag: str | None = None,
    bucket_owner: str | None = None,
) -> InspectedSource:
    """The source file's version, format, virtual size and allocated ranges; refuses a missing or unsafe file."""
    source = sources.find(request.bucket, request.object_key, expected_etag=expected_etag, bucket_owner=bucket_owner)
    with engine_errors_as_ims(), open_disk(sources.reader(source), ova_disk=request.ova_disk) as disk:
        return InspectedSource(
            source=source,
            format=disk.format,
            virtual_size=disk.virtual_size,
            allocated_ranges=disk.allocated_ranges(),
        )


def _running_job(jobs: JobStore, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise ImportFailedError(f"Job {job_id} does not exist.")
    if job.status != "RUNNING":
        raise ImportFailedError(f"Job {job_id} is {job.status}, not RUNNING; it cannot be imported again.")
    return job


def check_disk_size(min_disk_gib: int, virtual_size: int) -> None:
    if virtual_size > min_disk_gib * GIB:
        needed_gib = -(-virtual_size // GIB)
        raise DiskSizeError(
            f"The virtual disk in the file is {virtual_size} bytes ({needed_gib} GB rounded up) but min_disk is "
            f"{min_disk_gib} GB ({min_disk_gib * GIB} bytes): set min_disk to at least {needed_gib}."
        )


def _queued_image(job: Job, request: CreateDataImageRequest) -> ImageRecord:
    return ImageRecord.model_validate(
        {
            "id": image_id_for_job(job.job_id),
            "name": request.name,
            "description": request.description or "",
            "status": "queued",
            "__os_type": request.effective_os_type,
            "min_disk": request.min_disk,
            "__data_origin": f"file,{request.bucket}:{request.object_key}",
            "__system__cmkid": request.cmk_id,
            "tags": [f"{key}.{value}" for key, value in request.tag_pairs()],
            "enterprise_project_id": request.enterprise_project_id or "0",
            "owner": job.project_id,
            "job_id": job.job_id,
        }
    )
