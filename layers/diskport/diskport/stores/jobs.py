"""Jobs: the rules of an import job's life, and the Jobs table (the only code that touches it).

A job is INIT when accepted, RUNNING once the state machine starts, and ends SUCCESS or FAIL; an ended
job never changes again. Each project's imports under way are counted in the Projects table, in the same
transaction that writes the job: accepting a job takes a slot only while fewer than the limit are taken, and
ending it gives the slot back. Concurrent creates therefore can never exceed the limit, and the count cannot
drift from the jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from diskport.errors import FlowControlError, NotFoundError
from diskport.settings import get_settings
from diskport.stores import aws, aws_errors
from diskport.stores.items import decimals, now_iso, plain, set_attributes
from diskport.stores.project_counters import decrement, increment_below
from diskport.stores.work_files import Chunk

JOB_TYPE = "imsImportDataImageJob"
JobStatus = Literal["INIT", "RUNNING", "SUCCESS", "FAIL"]
ENDED: tuple[JobStatus, ...] = ("SUCCESS", "FAIL")
# The Projects table's count of each project's jobs not yet ended (project_counters.py).
IMPORTS_UNDER_WAY = "imports_under_way"
# Per chunk (by chunk id): the bytes its convert worker has counted, and the worker's rate lease (rate_control.py).
CHUNK_BYTES = "chunk_bytes_done"
WRITERS = "writers"
# The chunks whose blocks are all in the snapshot and whose checksums are saved: a set, so a re-run counts once.
CHUNKS_FINISHED = "chunks_finished"
# The plan's first chunks, one for each convert worker started beside Fetch, written once Fetch has made them
# ready (the snapshot started, the manifest saved).
FIRST_CHUNKS = "first_chunks"
# The Jobs table's index of each project's jobs by begin_time (template.yaml), for listing them newest first.
JOBS_BY_PROJECT_INDEX = "by-project"
# The step a running job is in, as `current_task` names it.
TASK_NAMES = {
    "fetch": "fetching and inspecting the image file",
    "convert": "converting the virtual disk into snapshot blocks",
    "register": "registering the image",
    "done": "done",
}


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
    # Register has called CompleteSnapshot: a snapshot EBS is still completing reads `pending` like one never
    # sealed, and a second CompleteSnapshot must not be sent.
    snapshot_sealed: bool = False

    @property
    def process_percent(self) -> float:
        if self.status == "SUCCESS":
            return 100.0
        if self.bytes_total <= 0:
            return 0.0
        return round(min(100.0, 100.0 * self.bytes_done / self.bytes_total), 1)


@dataclass(frozen=True)
class ChunkRecord:
    """A chunk's entry in its job's item, as a renewal leaves it."""

    counted_bytes: int
    writers: dict[str, Any] = field(default_factory=dict)
    chunks_finished: int = 0
    finished: bool = False


@dataclass(frozen=True)
class FirstChunks:
    """The job as a worker started beside Fetch sees it: ended, or the first chunks once Fetch published them."""

    ended: bool = False
    chunks: list[Chunk] | None = None


def _from_item(item: dict[str, Any]) -> Job:
    return Job.model_validate(plain(item))


class JobStore:
    """The Jobs table, and each project's count of imports under way in the Projects table."""

    def __init__(self, table: Any | None = None, projects_table: Any | None = None) -> None:
        settings = get_settings()
        self._table = table if table is not None else aws.dynamodb_table(settings.jobs_table)
        self._projects = projects_table if projects_table is not None else aws.dynamodb_table(settings.projects_table)

    def create(self, job: Job, *, max_imports_under_way: int | None = None) -> None:
        """Record a job. One under way (INIT) takes one of its project's import slots: FlowControlError when the
        project already has `max_imports_under_way`. A job refused before it started (FAIL) takes none."""
        item = {key: value for key, value in job.model_dump().items() if value is not None}
        if job.status in ENDED:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(job_id)")
            return
        limit = max_imports_under_way if max_imports_under_way is not None else get_settings().max_active_jobs
        take_slot = increment_below(self._projects.name, job.project_id, IMPORTS_UNDER_WAY, limit)
        put_job = {
            "Put": {
                "TableName": self._table.name,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        try:
            self._table.meta.client.transact_write_items(TransactItems=[take_slot, put_job])
        except ClientError as error:
            if aws_errors.cancelled_by_condition(error, 0):
                raise FlowControlError(
                    f"The project has {limit} imports under way, as many as may run at once. Retry when one has ended."
                ) from error
            raise

    def get(self, job_id: str) -> Job | None:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return _from_item(item) if item else None

    def page_for_project(
        self, project_id: str, *, limit: int, marker: str | None = None
    ) -> tuple[list[Job], str | None]:
        """Up to `limit` of the project's jobs, newest first, after the job `marker`; and the next page's marker."""
        query: dict[str, Any] = {
            "IndexName": JOBS_BY_PROJECT_INDEX,
            "KeyConditionExpression": "project_id = :project",
            "ExpressionAttributeValues": {":project": project_id},
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if marker is not None:
            after = self.get(marker)
            if after is None or after.project_id != project_id:
                raise NotFoundError(f"The marker {marker} is not a job of this project.")
            query["ExclusiveStartKey"] = {
                "job_id": after.job_id,
                "project_id": project_id,
                "begin_time": after.begin_time,
            }
        jobs: list[Job] = []
        while True:
            page = self._table.query(**query)
            jobs.extend(_from_item(item) for item in page["Items"])
            if len(jobs) > limit:
                return jobs[:limit], jobs[limit - 1].job_id
            if "LastEvaluatedKey" not in page:
                return jobs, None
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def imports_under_way(self, project_id: str) -> int:
        item = self._projects.get_item(Key={"project_id": project_id}, ConsistentRead=True).get("Item") or {}
        return int(item.get(IMPORTS_UNDER_WAY, 0))

    def _update_unless_ended(
        self,
        job_id: str,
        assignments: dict[str, Any],
        *,
        ends_job: bool = False,
        together_with: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Set attributes of a job still under way; False when the job has ended or does not exist.

        `ends_job`: the update ends the job, so its project's slot is given back in the same transaction, with the
        `together_with` transaction items (written only if the job is, and failing the job's update if they fail).
        """
        update = {"Key": {"job_id": job_id}, **set_attributes(assignments)}
        update["ConditionExpression"] = "attribute_exists(job_id) AND NOT #status IN (:success, :fail)"
        update["ExpressionAttributeNames"]["#status"] = "status"
        update["ExpressionAttributeValues"].update({":success": "SUCCESS", ":fail": "FAIL"})
        try:
            if not ends_job:
                self._table.update_item(**update)
                return True
            job = self.get(job_id)
            if job is None or job.status in ENDED:
                return False
            give_back_slot = decrement(self._projects.name, job.project_id, IMPORTS_UNDER_WAY)
            end_job = {**update, "TableName": self._table.name}
            # The resource's client takes Python values, as the table does: boto3 serializes them.
            self._table.meta.client.transact_write_items(
                TransactItems=[{"Update": end_job}, give_back_slot, *together_with]
            )
        except ClientError as error:
            if aws_errors.is_condition_failed(error) or aws_errors.cancelled_by_condition(error, 0):
                return False
            raise
        return True

    def mark_running(self, job_id: str) -> bool:
        return self._update_unless_ended(job_id, {"status": "RUNNING", "current_task": "fetch"})

    def set_task(self, job_id: str, task: str) -> bool:
        return self._update_unless_ended(job_id, {"current_task": task})

    def set_plan(self, job_id: str, *, image_id: str, bytes_total: int) -> bool:
        if not self._update_unless_ended(job_id, {"image_id": image_id, "bytes_total": bytes_total}):
            return False
        self._make_chunk_maps(job_id)
        return True

    def publish_first_chunks(self, job_id: str, chunks: Sequence[Chunk]) -> bool:
        """Hand the plan's first chunks to the workers waiting for them (`first_chunks`)."""
        return self._update_unless_ended(job_id, {FIRST_CHUNKS: [chunk.model_dump() for chunk in chunks]})

    def first_chunks(self, job_id: str) -> FirstChunks:
        """What a worker started beside Fetch waits for: the chunks Fetch published, or the job's end."""
        item = self._table.get_item(
            Key={"job_id": job_id},
            ConsistentRead=True,
            ProjectionExpression="#status, #first",
            ExpressionAttributeNames={"#status": "status", "#first": FIRST_CHUNKS},
        ).get("Item")
        if item is None:
            return FirstChunks(ended=True)
        published = item.get(FIRST_CHUNKS)
        return FirstChunks(
            ended=item.get("status") in ENDED,
            chunks=None if published is None else [Chunk.model_validate(plain(chunk)) for chunk in published],
        )

    def mark_snapshot_sealed(self, job_id: str) -> bool:
        return self._update_unless_ended(job_id, {"snapshot_sealed": True})

    def _make_chunk_maps(self, job_id: str) -> None:
        """The maps the convert workers write their progress and leases into, made once (a re-run keeps them)."""
        self._table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=f"SET {CHUNK_BYTES} = if_not_exists({CHUNK_BYTES}, :empty), "
            f"{WRITERS} = if_not_exists({WRITERS}, :empty)",
            ConditionExpression="attribute_exists(job_id)",
            ExpressionAttributeValues={":empty": {}},
        )

    def chunk_bytes_done(self, job_id: str, chunk_id: str) -> int:
        """The bytes of the chunk its workers have counted so far (a re-run goes on from there)."""
        return self.chunk_record(job_id, chunk_id).counted_bytes

    def chunk_record(self, job_id: str, chunk_id: str) -> ChunkRecord:
        """What the job item holds of the chunk: its bytes counted, and whether a run of it has finished."""
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {}
        finished = item.get(CHUNKS_FINISHED) or set()
        return ChunkRecord(
            counted_bytes=int((item.get(CHUNK_BYTES) or {}).get(chunk_id, 0)),
            writers=plain(item.get(WRITERS) or {}),
            chunks_finished=len(finished),
            finished=chunk_id in finished,
        )

    def renew_chunk(
        self,
        job_id: str,
        chunk_id: str,
        *,
        lease: dict[str, Any] | None,
        counted_bytes: int,
        bytes_done: int,
        finished: bool = False,
    ) -> ChunkRecord:
        """Renew (or, with None, drop) a chunk's writer lease, and count its progress from `counted_bytes` up to
        `bytes_done`, in one write; `finished` also counts the chunk among the finished ones. Answers the bytes now
        counted for the chunk, the import's writer leases and how many of its chunks have finished.

        Progress is added once: the write counts the difference only if the chunk's record still holds
        `counted_bytes`; a record another run of the chunk moved meanwhile is read back and the write is redone.
        """
        maps_made = False
        while True:
            names: dict[str, str] = {"#chunk": chunk_id}
            values: dict[str, Any] = {}
            sets: list[str] = []
            condition = "attribute_exists(job_id)"
            if lease is not None:
                sets.append(f"{WRITERS}.#chunk = :lease")
                values[":lease"] = decimals(lease)
            removes = [] if lease is not None else [f"{WRITERS}.#chunk"]
            adds = []
            if finished:
                adds.append(f"{CHUNKS_FINISHED} :finished")
                values[":finished"] = {chunk_id}
            if bytes_done > counted_bytes:
                sets.append(f"{CHUNK_BYTES}.#chunk = :done")
                adds.append("bytes_done :delta")
                values.update({":done": bytes_done, ":delta": bytes_done - counted_bytes})
                if counted_bytes == 0:
                    condition += f" AND (attribute_not_exists({CHUNK_BYTES}.#chunk) OR {CHUNK_BYTES}.#chunk = :zero)"
                    values[":zero"] = 0
                else:
                    condition += f" AND {CHUNK_BYTES}.#chunk = :counted"
                    values[":counted"] = counted_bytes
            clauses = [f"SET {', '.join(sets)}" if sets else "", f"REMOVE {', '.join(removes)}" if removes else ""]
            clauses.append(f"ADD {', '.join(adds)}" if adds else "")
            if not any(clauses):
                return ChunkRecord(counted_bytes=counted_bytes)
            request: dict[str, Any] = {
                "Key": {"job_id": job_id},
                "UpdateExpression": " ".join(clause for clause in clauses if clause),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ReturnValues": "ALL_NEW",
            }
            if values:
                request["ExpressionAttributeValues"] = values
            try:
                item = self._table.update_item(**request)["Attributes"]
            except ClientError as error:
                if aws_errors.error_code(error) == "ValidationException" and not maps_made:
                    # A job planned before the maps existed (or by a test that skipped Fetch).
                    self._make_chunk_maps(job_id)
                    maps_made = True
                    continue
                if not aws_errors.is_condition_failed(error):
                    raise
                recorded = self.chunk_bytes_done(job_id, chunk_id)
                if recorded >= bytes_done:
                    # Another run of the chunk got further: nothing to add, but the lease still renews.
                    counted_bytes = bytes_done = recorded
                else:
                    counted_bytes = recorded
                continue
            finished_chunks = item.get(CHUNKS_FINISHED) or set()
            return ChunkRecord(
                counted_bytes=bytes_done,
                writers=plain(item.get(WRITERS) or {}),
                chunks_finished=len(finished_chunks),
                finished=chunk_id in finished_chunks,
            )

    def mark_succeeded(
        self, job_id: str, *, image_id: str, image_name: str, together_with: Sequence[dict[str, Any]] = ()
    ) -> bool:
        """End the job SUCCESS, in one transaction with `together_with` (the image turning active)."""
        return self._update_unless_ended(
            job_id,
            {
                "status": "SUCCESS",
                "end_time": now_iso(),
                "image_id": image_id,
                "image_name": image_name,
                "current_task": "done",
            },
            ends_job=True,
            together_with=together_with,
        )

    def mark_failed(self, job_id: str, *, error_code: str, fail_reason: str) -> bool:
        return self._update_unless_ended(
            job_id,
            {"status": "FAIL", "end_time": now_iso(), "error_code": error_code, "fail_reason": fail_reason},
            ends_job=True,
        )
