"""Accepting an import: the one path from a valid request to a job and a running state machine.

The API and the upload trigger both come through here, so flow control, the job record and the start
of the execution behave the same whichever way an import begins.
"""

from __future__ import annotations

import json
from typing import Any

from diskport import aws
from diskport.api_models import CreateDataImageRequest
from diskport.errors import FlowControlError, ServiceUnavailableError
from diskport.jobs import Job, JobStore
from diskport.observability import logger
from diskport.settings import Settings, get_settings


def start_import(
    request: CreateDataImageRequest,
    project_id: str,
    *,
    origin: str = "api",
    job_id: str | None = None,
    jobs: JobStore | None = None,
    step_functions: Any | None = None,
    settings: Settings | None = None,
) -> Job:
    """Record a job for the request and start its execution; the job is INIT when this returns."""
    settings = settings or get_settings()
    jobs = jobs or JobStore()
    step_functions = step_functions or aws.client("stepfunctions")

    active = jobs.count_active(project_id)
    if active >= settings.max_active_jobs:
        raise FlowControlError(
            f"The project has {active} imports under way; at most {settings.max_active_jobs} may run at once. "
            "Retry when one has ended."
        )
    job = Job(project_id=project_id, request=request.model_dump(exclude_none=True), origin=origin)
    if job_id is not None:
        job.job_id = job_id
    jobs.create(job)
    try:
        step_functions.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=job.job_id,
            input=json.dumps({"job_id": job.job_id}),
        )
    except Exception as error:
        logger.exception("Could not start the import execution", extra={"job_id": job.job_id})
        jobs.mark_failed(
            job.job_id,
            error_code="IMG.0061",
            fail_reason="The import could not be started; send the request again.",
        )
        raise ServiceUnavailableError("The import could not be started; send the request again.") from error
    return job
