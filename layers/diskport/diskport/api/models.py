"""The IMS wire format of the answers: response bodies as pydantic models, which also produce the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CreateJobResponse(BaseModel):
    job_id: str = Field(description="The asynchronous job id (32 hex characters).")


class JobEntities(BaseModel):
    model_config = ConfigDict(extra="allow")

    image_id: str | None = None
    image_name: str | None = None


class JobView(BaseModel):
    """`GET /v1/{project_id}/jobs/{job_id}` (ims-api.md §2)."""

    job_id: str
    job_type: str
    begin_time: str
    end_time: str | None
    status: Literal["INIT", "RUNNING", "SUCCESS", "FAIL"]
    error_code: str | None
    fail_reason: str | None
    entities: JobEntities


class JobProgressEntities(JobEntities):
    process_percent: float = Field(0, ge=0, le=1, description="How much of the job is done, from 0 to 1.")
    current_task: str = Field("", description="The step under way; empty once the job has ended.")


class JobProgressView(JobView):
    """`GET /v1/cloudimages/job/{job_id}` (ims-api.md §3)."""

    entities: JobProgressEntities


class JobList(BaseModel):
    """`GET /v1/cloudimages/jobs`, a diskport extension (IMS has no job listing): the project's jobs, newest first."""

    jobs: list[JobProgressView]
    next: str | None = Field(None, description="The link to the next page; null on the last page.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
