"""Accepting an import: the one path from a valid request to a job and a running state machine.

The API and the upload trigger both come through here, so flow control, the job record and the start
of the execution behave the same whichever way an import begins. An upload has no caller to answer a
refusal to, so `record_refused_import` gives it a job that is FAIL from the start instead.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from diskport import aws
from diskport.api_models import CreateDataImageRequest
from diskport.errors import DiskportError, ServiceUnavailableError
from diskport.jobs import Job, JobStore, now_iso
from diskport.observability import logger
from diskport.settings import Settings, get_settings


def start_import(
    request: CreateDataImageRequest,
    project_id: str,
    *,
    origin: str = "api",
    job_id: str | None = None,
    source_etag: str | None = None,
    jobs: JobStore | None = None,
    step_functions: Any | None = None,
    settings: Settings | None = None,
) -> Job:
    """Record a job for the request and start its execution; the job is INIT when this returns.

    `source_etag` pins the job to one version of the file (see `Job.source_etag`).
    """
    settings = settings or get_settings()
    jobs = jobs or JobStore()
    step_functions = step_functions or aws.client("stepfunctions")

    job = Job(
        project_id=project_id, request=request.model_dump(exclude_none=True), origin=origin, source_etag=source_etag
    )
    if job_id is not None:
        job.job_id = job_id
    jobs.create(job, max_imports_under_way=settings.max_active_jobs)
    try:
        _start_execution(job.job_id, step_functions, settings)
    except Exception as error:
        logger.exception("Could not start the import execution", extra={"job_id": job.job_id})
        jobs.mark_failed(
            job.job_id,
            error_code="IMG.0061",
            fail_reason="The import could not be started; send the request again.",
        )
        raise ServiceUnavailableError("The import could not be started; send the request again.") from error
    return job


def resume_import(job: Job, *, step_functions: Any | None = None, settings: Settings | None = None) -> None:
    """Start the execution of an INIT job whose first start may have been cut short; a no-op once it runs.

    The execution is named after the job, so a start that already happened is refused, never doubled.
    """
    settings = settings or get_settings()
    step_functions = step_functions or aws.client("stepfunctions")
    try:
        _start_execution(job.job_id, step_functions, settings)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise


def record_refused_import(
    request_fields: dict[str, Any],
    project_id: str,
    refusal: DiskportError,
    *,
    origin: str,
    job_id: str | None = None,
    jobs: JobStore | None = None,
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
    (jobs or JobStore()).create(job)
    return job


def _start_execution(job_id: str, step_functions: Any, settings: Settings) -> None:
    step_functions.start_execution(
        stateMachineArn=settings.state_machine_arn,
        name=job_id,
        input=json.dumps({"job_id": job_id}),
    )
