"""Jobs: the rules of an import job's life, and the Jobs table (the only code that touches it).

A job is INIT when accepted, RUNNING once the state machine starts, and ends SUCCESS or FAIL; an ended
job never changes again. `active_project_id` is set only while a job is INIT or RUNNING, so the sparse
index on it counts a project's imports under way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from diskport import aws
from diskport.settings import get_settings

JOB_TYPE = "imsImportDataImageJob"
ACTIVE_INDEX = "active-by-project"
JobStatus = Literal["INIT", "RUNNING", "SUCCESS", "FAIL"]
ENDED: tuple[JobStatus, ...] = ("SUCCESS", "FAIL")


def now_iso() -> str:
    """A timestamp as IMS writes them: `2024-11-06T06:27:03.742Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    return uuid.uuid4().hex


class Job(BaseModel):
    job_id: str = Field(default_factory=new_job_id)
    project_id: str
    job_type: str = JOB_TYPE
    status: JobStatus = "INIT"
    begin_time: str = Field(default_factory=now_iso)
    end_time: str | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    request: dict[str, Any]
    origin: str = "api"
    # The ETag of the file version the job imports, when it is known at creation (uploads): Fetch refuses any
    # other version, so a file replaced before its import starts is never imported under the old upload's job.
    source_etag: str | None = None
    image_id: str | None = None
    image_name: str | None = None
    current_task: str | None = None
    bytes_total: int = 0
    bytes_done: int = 0

    @property
    def process_percent(self) -> float:
        if self.status == "SUCCESS":
            return 100.0
        if self.bytes_total <= 0:
            return 0.0
        return round(min(100.0, 100.0 * self.bytes_done / self.bytes_total), 1)


def _from_item(item: dict[str, Any]) -> Job:
    return Job.model_validate(_plain(item))


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals back to ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value


class JobStore:
    """The Jobs table."""

    def __init__(self, table: Any | None = None) -> None:
        self._table = table if table is not None else aws.dynamodb_table(get_settings().jobs_table)

    def create(self, job: Job) -> None:
        item = {key: value for key, value in job.model_dump().items() if value is not None}
        if job.status not in ENDED:  # a job refused before it started never counts as under way
            item["active_project_id"] = job.project_id
        self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")

    def get(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return _from_item(item) if item else None

    def count_active(self, project_id: str) -> int:
        count = 0
        query: dict[str, Any] = {
            "IndexName": ACTIVE_INDEX,
            "KeyConditionExpression": "active_project_id = :project",
            "ExpressionAttributeValues": {":project": project_id},
            "Select": "COUNT",
        }
        while True:
            page = self._table.query(**query)
            count += int(page["Count"])
            if "LastEvaluatedKey" not in page:
                return count
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update_unless_ended(self, job_id: str, assignments: dict[str, Any], remove: tuple[str, ...] = ()) -> bool:
        """Set attributes of a job still under way; False when the job has ended or does not exist."""
        names = {f"#{index}": name for index, name in enumerate(assignments)}
        values = {f":{index}": value for index, value in enumerate(assignments.values())}
        expression = "SET " + ", ".join(f"#{index} = :{index}" for index in range(len(assignments)))
        if remove:
            expression += " REMOVE " + ", ".join(remove)
        values[":success"], values[":fail"] = "SUCCESS", "FAIL"
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(job_id) AND NOT #status IN (:success, :fail)",
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_running(self, job_id: str) -> bool:
        return self._update_unless_ended(job_id, {"status": "RUNNING", "current_task": "fetch"})

    def set_task(self, job_id: str, task: str) -> bool:
        return self._update_unless_ended(job_id, {"current_task": task})

    def set_plan(self, job_id: str, *, image_id: str, bytes_total: int) -> bool:
        return self._update_unless_ended(job_id, {"image_id": image_id, "bytes_total": bytes_total})

    def add_progress(self, job_id: str, chunk_id: str, converted_bytes: int) -> None:
        """Count a converted chunk once, however often it is re-run."""
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="ADD bytes_done :bytes, chunks_done :chunk",
                ConditionExpression="attribute_exists(job_id) AND NOT contains(chunks_done, :chunk_id)",
                ExpressionAttributeValues={":bytes": converted_bytes, ":chunk": {chunk_id}, ":chunk_id": chunk_id},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def mark_succeeded(self, job_id: str, *, image_id: str, image_name: str) -> bool:
        return self._update_unless_ended(
            job_id,
            {
                "status": "SUCCESS",
                "end_time": now_iso(),
                "image_id": image_id,
                "image_name": image_name,
                "current_task": "done",
            },
            remove=("active_project_id",),
        )

    def mark_failed(self, job_id: str, *, error_code: str, fail_reason: str) -> bool:
        return self._update_unless_ended(
            job_id,
            {"status": "FAIL", "end_time": now_iso(), "error_code": error_code, "fail_reason": fail_reason},
            remove=("active_project_id",),
        )
