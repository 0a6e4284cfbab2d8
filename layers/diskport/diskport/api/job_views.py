"""What a caller sees of a job: the IMS job schema and its progress view, for the caller's project only."""

from __future__ import annotations

from urllib.parse import urlencode

from diskport.api.models import JobEntities, JobList, JobProgressEntities, JobProgressView, JobView
from diskport.errors import NotFoundError
from diskport.stores.jobs import ENDED, Job, JobStore


def find_job(job_id: str, project_id: str, jobs: JobStore) -> Job:
    """The job, if it exists and belongs to the project; otherwise NotFoundError, whichever it was."""
    job = jobs.get(job_id) if _looks_like_job_id(job_id) else None
    if job is None or job.project_id != project_id:
        raise NotFoundError(f"Job {job_id} does not exist.")
    return job


JOBS_PATH = "/v1/cloudimages/jobs"
DEFAULT_JOBS_LIMIT = 50
MAX_JOBS_LIMIT = 200


def list_jobs(project_id: str, jobs: JobStore, *, limit: int, marker: str | None = None) -> JobList:
    """The project's jobs newest first, each as the progress route shows it, with the link to the next page."""
    page, next_marker = jobs.page_for_project(project_id, limit=limit, marker=marker)
    following = f"{JOBS_PATH}?{urlencode({'limit': limit, 'marker': next_marker})}" if next_marker else None
    return JobList(jobs=[job_progress_view(job) for job in page], next=following)


def job_view(job: Job) -> JobView:
    return JobView(
        job_id=job.job_id,
        job_type=job.job_type,
        begin_time=job.begin_time,
        end_time=job.end_time,
        status=job.status,
        error_code=job.error_code,
        fail_reason=job.fail_reason,
        entities=JobEntities(image_id=_image_id_when_done(job), image_name=_image_name(job)),
    )


def job_progress_view(job: Job) -> JobProgressView:
    return JobProgressView(
        **job_view(job).model_dump(exclude={"entities"}),
        entities=JobProgressEntities(
            image_id=job.image_id,
            image_name=_image_name(job),
            process_percent=progress_fraction(job),
            current_task=_current_task(job),
        ),
    )


def progress_fraction(job: Job) -> float:
    """`process_percent` as IMS answers it (querying_the_progress_of_an_asynchronous_job.rst): a fraction of 1,
    which is 1 exactly once the job has succeeded. The job counts its progress in percent."""
    return round(min(100.0, max(0.0, job.process_percent)) / 100, 4)


def _current_task(job: Job) -> str:
    # IMS's example of an ended imsImportDataImageJob answers "current_task": "".
    if job.status in ENDED:
        return ""
    return job.current_task or ""


def _image_id_when_done(job: Job) -> str | None:
    return job.image_id if job.status == "SUCCESS" else None


def _image_name(job: Job) -> str | None:
    return job.image_name or job.request.get("name")


def _looks_like_job_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(ch in "0123456789abcdef" for ch in job_id)
