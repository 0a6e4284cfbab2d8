"""MarkFailed: a failed import ends cleanly — job FAIL with a reason, image killed, snapshot and work files gone.

Two callers: the state machine's Catch (`{"job_id", "error": {"Error", "Cause"}}`), and the EventBridge rule on
executions that FAILED, TIMED_OUT or were ABORTED without reaching the Catch (the execution's name is the job
id). Both may arrive for the same job; every action here can run twice. A job that succeeded is left alone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict

from diskport.errors import StepFailure
from diskport.observability import logger
from diskport.pipeline.step_errors import (
    UNEXPECTED_CODE,
    decoded_failure,
    error_name,
    unexpected_failure,
)
from diskport.stores import Stores
from diskport.stores.images import ImageStore, image_id_for_job
from diskport.stores.jobs import TASK_NAMES, Job
from diskport.stores.snapshots import SnapshotKeptError, SnapshotStore
from diskport.stores.work_files import WorkFiles

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
JOB_TAG = "diskport:job-id"
_ENDED_EXECUTION_REASONS = {
    "TIMED_OUT": "The import took longer than the service allows and was stopped. Start a new import.",
    "ABORTED": "The import was stopped before it finished. Start a new import.",
}


class ExecutionStatusDetail(BaseModel):
    """The detail of Step Functions' "Execution Status Change" event that MarkFailed reads."""

    model_config = ConfigDict(extra="ignore")

    name: str
    status: str = "FAILED"
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(EventBridgeModel):
    """Step Functions' execution status change, as EventBridge delivers it (Powertools' envelope model)."""

    detail: ExecutionStatusDetail


class FailedImport(BaseModel):
    """A failure to record: which job, and the error as the state machine or EventBridge reported it."""

    job_id: str
    error: Any = None
    execution_status: str = "FAILED"

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> FailedImport:
        """From the state machine's Catch (`{"job_id", "error"}`) or from the EventBridge rule's event."""
        if event.get("detail-type") == EXECUTION_STATUS_CHANGE:
            detail = ExecutionStatusChange.model_validate(event).detail
            return cls(
                job_id=detail.name,
                error={"Error": detail.error, "Cause": detail.cause},
                execution_status=detail.status,
            )
        return cls(job_id=str(event["job_id"]), error=event.get("error"))


class FailureOutcome(BaseModel):
    job_id: str
    error_code: str | None
    fail_reason: str | None
    snapshots_deleted: list[str]
    # Snapshots EBS refused to delete (in use, in a state that cannot be deleted): logged for an operator.
    snapshots_kept: list[str] = []


def mark_import_failed(failed: FailedImport, stores: Stores) -> FailureOutcome:
    jobs, images, snapshots = stores.jobs, stores.images, stores.snapshots
    work_files = stores.work_files(failed.job_id)

    job = jobs.get(failed.job_id)
    if job is None or job.status == "SUCCESS":
        return FailureOutcome(job_id=failed.job_id, error_code=None, fail_reason=None, snapshots_deleted=[])
    failure = job_failure(job, failed, work_files)
    if jobs.mark_failed(job.job_id, error_code=failure.code, fail_reason=failure.reason):
        logger.info("Import failed", extra={"job_id": job.job_id, "code": failure.code, "reason": failure.reason})
    else:
        ended = jobs.get(job.job_id)
        if ended is not None and ended.status == "SUCCESS":
            # Register ended the job first (an execution stopped while it ran): the import succeeded.
            return FailureOutcome(job_id=job.job_id, error_code=None, fail_reason=None, snapshots_deleted=[])
        # Already FAIL (the Catch and the EventBridge rule both came): keep the first reason, clean up again.
        if ended is not None and ended.error_code and ended.fail_reason:
            failure = StepFailure(ended.error_code, ended.fail_reason)

    # The image is killed first: it never reads `saving` or `active` over a snapshot that is already gone.
    _kill_image(job, images)
    deleted, kept = _remove_snapshots(job, images, snapshots)
    work_files.delete_all()
    return FailureOutcome(
        job_id=job.job_id,
        error_code=failure.code,
        fail_reason=failure.reason,
        snapshots_deleted=deleted,
        snapshots_kept=kept,
    )


def job_failure(job: Job, failed: FailedImport, work_files: WorkFiles) -> StepFailure:
    """The code and reason the job reports, root cause first: a chunk's recorded failure, else the failed step's
    own, else IMG.1075 naming the step that was running."""
    if failed.execution_status in _ENDED_EXECUTION_REASONS:
        return StepFailure(UNEXPECTED_CODE, _ENDED_EXECUTION_REASONS[failed.execution_status])
    recorded = work_files.recorded_failure()
    if recorded is not None:
        return recorded
    decoded = decoded_failure(failed.error)
    if decoded is not None:
        return decoded
    return unexpected_failure(error_name(failed.error), TASK_NAMES.get(job.current_task or ""))


def _remove_snapshots(job: Job, images: ImageStore, snapshots: SnapshotStore) -> tuple[list[str], list[str]]:
    """The snapshots deleted, and those EBS would not delete.

    The job did not succeed (a SUCCESS job returned earlier), so even an image Register had just made active
    (the job ended under it) is undone. One snapshot that cannot be deleted does not keep the others, or the
    work files, from going; passing trouble (throttling, a 5xx) is raised, so the whole step is retried.
    """
    image = images.get(job.image_id or image_id_for_job(job.job_id), job.project_id)
    candidates = set(snapshots.ids_tagged(JOB_TAG, job.job_id))
    if image is not None and image.snapshot_id:
        candidates.add(image.snapshot_id)
    deleted: list[str] = []
    kept: list[str] = []
    for snapshot_id in sorted(candidates):
        try:
            snapshots.delete(snapshot_id)
        except SnapshotKeptError as kept_by_ebs:
            logger.warning(
                "Snapshot of a failed import not deleted",
                extra={"job_id": job.job_id, "snapshot_id": snapshot_id, "code": kept_by_ebs.code},
            )
            kept.append(snapshot_id)
        else:
            deleted.append(snapshot_id)
    return deleted, kept


def _kill_image(job: Job, images: ImageStore) -> None:
    image = images.get(job.image_id or image_id_for_job(job.job_id), job.project_id)
    if image is not None:
        images.kill(image)
