"""Following jobs: `diskport job ID --wait` and `import --wait` show one bar until the job ends; `diskport jobs`.

Ctrl-C while following stops the following, not the job: the job goes on, and the command says how to follow it
again.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from diskport_local.client import ApiClient
from diskport_local.command_errors import CommandError, CommandInterruptedError
from diskport_local.output import job_task, percent_of
from diskport_local.progress import ProgressBar

ENDED_STATUSES = ("SUCCESS", "FAIL")
MAX_JOBS = 200  # the most GET /v1/cloudimages/jobs answers in one page


def wait_for_job(
    api: ApiClient,
    job_id: str,
    *,
    poll_seconds: float,
    timeout_seconds: float = 6 * 3600,
    bar: ProgressBar | None = None,
) -> Any:
    """Poll the job until it ends, showing its progress; the ended job."""
    bar = bar or ProgressBar()
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            job = api.job(job_id)
            entities = job.get("entities") or {}
            bar.show(percent_of(entities.get("process_percent")), f"{job['status']} {job_task(job)}".strip())
            if job["status"] in ENDED_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Job {job_id} has not ended after {timeout_seconds:.0f} s; see `diskport job {job_id}`."
                )
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        bar.finish()
        raise CommandInterruptedError(
            f"Stopped following job {job_id}; the import goes on. Follow it again with: diskport job {job_id} --wait"
        ) from None
    finally:
        bar.finish()


def list_jobs(api: ApiClient, *, limit: int) -> list[dict[str, Any]]:
    """The project's newest `limit` jobs (GET /v1/cloudimages/jobs, a diskport extension)."""
    answer = api.call("GET", "/v1/cloudimages/jobs", query={"limit": str(limit)})
    return list(answer.get("jobs", []))


def jobs_limit(text: str) -> int:
    """`diskport jobs --limit`: a whole number the route accepts."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{value} is not from 1 to {MAX_JOBS}")
    return value
