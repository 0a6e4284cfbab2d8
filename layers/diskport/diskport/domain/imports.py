"""Accepting an import: the one path from a valid request to a job and a running state machine.

The API and the upload trigger both come through here, so flow control, the job record and the start
of the execution behave the same whichever way an import begins. An upload has no caller to answer a
refusal to, so `record_refused_import` gives it a job that is FAIL from the start instead.
"""

from __future__ import annotations

from typing import Any

from diskport.domain.requests import CreateDataImageRequest
from diskport.errors import DiskportError, ServiceUnavailableError
from diskport.observability import logger
from diskport.stores import Stores
from diskport.stores.items import now_iso
from diskport.stores.jobs import Job


def start_import(
    request: CreateDataImageRequest,
    project_id: str,
    stores: Stores,
    *,
    origin: str = "api",
    job_id: str | None = None,
    source_etag: str | None = None,
) -> Job:
    """Record a job for the request and start its execution; the job is INIT when this returns.

    `source_etag` pins the job to one version of the file (see `Job.source_etag`).
    """
    jobs = stores.jobs
    job = Job(
        project_id=project_id, request=request.model_dump(exclude_none=True), origin=origin, source_etag=source_etag
    )
    if job_id is not None:
        job.job_id = job_id
    jobs.create(job, max_imports_under_way=stores.settings.max_active_jobs)
    try:
        stores.executions.start(job.job_id)
    except Exception as error:
        logger.exception("Could not start the import execution", extra={"job_id": job.job_id})
        jobs.mark_failed(
            job.job_id,
            error_code="IMG.0061",
            fail_reason="The import could not be started; send the request again.",
        )
        raise ServiceUnavailableError("The import could not be started; send the request again.") from error
    return job


def resume_import(job: Job, stores: Stores) -> None:
    """Start the execution of an INIT job whose first start may have been cut short; a no-op once it runs.

    The execution is named after the job, so a start that already happened is refused, never doubled.
    """
    stores.executions.start_unless_started(job.job_id)


def record_refused_import(
    request_fields: dict[str, Any],
    project_id: str,
    refusal: DiskportError,
    stores: Stores,
    *,
    origin: str,
    job_id: str | None = None,
) -> Job:
    """Record an import refused before it started: a job that is FAIL from the start, with the refusal's code
    and reason, so whoever started it finds out why through the job API."""
    job = Job(
        project_id=project_id,
        request=request_fields,
        origin=origin,
        status="FAIL",
        end_time=now_iso(),
        error_code=refusal.code,
        fail_reason=refusal.reason,
    )
    if job_id is not None:
        job.job_id = job_id
    stores.jobs.create(job)
    return job
