"""Faults: whatever AWS does to the calls an import makes, the job ends correctly and the snapshot's bytes are exact.

Each case injects a fault at the wire (see `faults.py`): throttling and 5xx answers, and requests that time
out, a bounded number of times; a convert worker killed halfway through its chunk; an execution stopped from
outside. A passing fault must be absorbed (by botocore's retries, or by the state machine's Retry rules) and
the import must end SUCCESS with a snapshot that holds exactly qemu-img's reading of the file. A fault that
does not pass must end the job FAIL with a reason, leave no snapshot behind and no work files.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from diskport.pipeline.failure import FailedImport, mark_import_failed
from diskport.stores import Stores
from diskport.stores.jobs import JobStore
from diskport.stores.snapshots import SnapshotStore

from diskport_local.export import nonzero_blocks

from .conftest import ImageFile, Importer, ReliabilityReport
from .faults import WireFaults

# botocore makes 8 attempts (aws.CLIENT_CONFIG): up to 7 faults in a row stay inside one step invocation.
WITHIN_SDK_RETRIES = 3
BEYOND_SDK_RETRIES = 10


@dataclass(frozen=True)
class WireFaultCase:
    name: str
    service: str
    operation: str
    kind: str
    times: int
    status: int = 500
    code: str = ""
    # The CI run takes one case of each layer that absorbs faults; --run-slow takes them all.
    slow: bool = True

    def inject(self, faults: WireFaults) -> None:
        if self.kind == "timeout":
            faults.timeout(self.service, self.operation, times=self.times)
        else:
            faults.error(self.service, self.operation, status=self.status, code=self.code, times=self.times)

    @property
    def description(self) -> str:
        what = "read timeout" if self.kind == "timeout" else f"{self.status} {self.code}"
        return f"{self.service}:{self.operation} {what} x{self.times}"


PASSING_FAULTS = [
    WireFaultCase("s3-read-throttled", "s3", "GetObject", "error", WITHIN_SDK_RETRIES, 503, "SlowDown"),
    WireFaultCase("s3-read-5xx", "s3", "GetObject", "error", WITHIN_SDK_RETRIES, 500, "InternalError"),
    WireFaultCase("s3-read-timeout", "s3", "GetObject", "timeout", WITHIN_SDK_RETRIES, slow=False),
    WireFaultCase("s3-head-5xx", "s3", "HeadObject", "error", WITHIN_SDK_RETRIES, 503, "ServiceUnavailable"),
    WireFaultCase("ebs-start-5xx", "ebs", "StartSnapshot", "error", 2, 503, "ServiceUnavailableException"),
    WireFaultCase(
        "ebs-put-throttled", "ebs", "PutSnapshotBlock", "error", WITHIN_SDK_RETRIES, 429, "ThrottlingException"
    ),
    WireFaultCase(
        "ebs-put-5xx", "ebs", "PutSnapshotBlock", "error", WITHIN_SDK_RETRIES, 500, "InternalServerException"
    ),
    WireFaultCase("ebs-put-timeout", "ebs", "PutSnapshotBlock", "timeout", WITHIN_SDK_RETRIES),
    WireFaultCase(
        "ebs-complete-5xx", "ebs", "CompleteSnapshot", "error", 2, 500, "InternalServerException", slow=False
    ),
    WireFaultCase("ec2-describe-throttled", "ec2", "DescribeSnapshots", "error", 2, 503, "RequestLimitExceeded"),
    WireFaultCase(
        "dynamodb-update-throttled",
        "dynamodb",
        "UpdateItem",
        "error",
        WITHIN_SDK_RETRIES,
        400,
        "ProvisionedThroughputExceededException",
        slow=False,
    ),
    WireFaultCase("dynamodb-get-5xx", "dynamodb", "GetItem", "error", WITHIN_SDK_RETRIES, 500, "InternalServerError"),
    # Longer than botocore retries: the step fails with a retryable error and the state machine runs it again.
    WireFaultCase("s3-read-throttled-beyond-sdk", "s3", "GetObject", "error", BEYOND_SDK_RETRIES, 503, "SlowDown"),
    WireFaultCase(
        "ebs-put-5xx-beyond-sdk",
        "ebs",
        "PutSnapshotBlock",
        "error",
        BEYOND_SDK_RETRIES,
        500,
        "InternalServerException",
        slow=False,
    ),
    WireFaultCase("ebs-put-timeout-beyond-sdk", "ebs", "PutSnapshotBlock", "timeout", BEYOND_SDK_RETRIES),
]


def assert_snapshot_is_exact(importer: Importer, job: dict[str, Any], image_file: ImageFile) -> str:
    image = importer.image_record(job["entities"]["image_id"])
    assert image["status"] == "active"
    assert importer.snapshot_blocks(image["snapshot_id"]) == nonzero_blocks(image_file.oracle)
    return str(image["snapshot_id"])


def assert_cleaned_up_after_failure(importer: Importer, job: dict[str, Any]) -> None:
    assert job["status"] == "FAIL", job
    assert job["error_code"] and job["fail_reason"], job
    image = importer.image_record(job["entities"]["image_id"] or "") if job["entities"]["image_id"] else None
    if image is not None:
        assert image["status"] == "killed", image
    assert importer.snapshots() == {}, "a failed import must leave no snapshot, pending or completed"
    assert importer.work_files() == []


@pytest.fixture
def wire_faults(importer: Importer, monkeypatch: pytest.MonkeyPatch) -> WireFaults:
    faults = WireFaults()
    faults.install(monkeypatch)
    return faults


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else []) for case in PASSING_FAULTS],
)
def test_a_passing_fault_is_absorbed_and_the_snapshot_is_exact(
    case: WireFaultCase,
    importer: Importer,
    wire_faults: WireFaults,
    image_files: dict[str, ImageFile],
    report: ReliabilityReport,
) -> None:
    # Given a qcow2 file, and an AWS operation that will fail a few times
    image_file = image_files["qcow2"]
    url = importer.upload(image_file.path, "disks/data.qcow2")
    case.inject(wire_faults)

    # When the file is imported
    started = time.monotonic()
    job = importer.wait_for_end(importer.start(url))
    seconds = time.monotonic() - started

    # Then every fault was really injected, and the import still succeeded
    (fault,) = wire_faults.faults
    assert fault.injected == case.times
    assert job["status"] == "SUCCESS", job
    assert job["entities"]["process_percent"] == 1
    # And the snapshot holds exactly the disk's non-zero blocks, and nothing of the import is left over
    snapshot_id = assert_snapshot_is_exact(importer, job, image_file)
    assert importer.snapshots() == {snapshot_id: "completed"}
    assert importer.work_files() == []
    report.add(
        "faults",
        case=case.name,
        fault=case.description,
        injected=fault.injected,
        sdk_retries=len(importer.sleeps.sdk),
        step_retries=len(importer.sleeps.state_machine),
        status=job["status"],
        error_code=job["error_code"],
        bytes_exact=True,
        seconds=round(seconds, 2),
    )


def test_a_fault_that_never_passes_ends_the_job_fail_and_removes_the_snapshot(
    importer: Importer, wire_faults: WireFaults, image_files: dict[str, ImageFile], report: ReliabilityReport
) -> None:
    # Given EBS answering 500 to every PutSnapshotBlock
    url = importer.upload(image_files["qcow2"].path, "disks/data.qcow2")
    fault = wire_faults.error("ebs", "PutSnapshotBlock", status=500, code="InternalServerException", times=10**6)

    # When the file is imported
    started = time.monotonic()
    job = importer.wait_for_end(importer.start(url))
    seconds = time.monotonic() - started

    # Then the job failed with a reason, after a bounded number of attempts
    assert_cleaned_up_after_failure(importer, job)
    assert job["error_code"] == "IMG.1075"
    assert 8 <= fault.injected <= 8 * 7 * 8, fault.injected  # SDK attempts x step attempts x chunks, at most
    report.add(
        "faults",
        case="ebs-put-5xx-forever",
        fault="ebs:PutSnapshotBlock 500 InternalServerException, every time",
        injected=fault.injected,
        sdk_retries=len(importer.sleeps.sdk),
        step_retries=len(importer.sleeps.state_machine),
        status=job["status"],
        error_code=job["error_code"],
        bytes_exact=None,
        seconds=round(seconds, 2),
    )


class WorkerKilledError(BaseException):
    """The convert worker's process dies: nothing in the handler can catch it (not an Exception)."""


def test_a_convert_worker_killed_halfway_through_its_chunk_is_run_again_and_the_snapshot_is_exact(
    importer: Importer,
    image_files: dict[str, ImageFile],
    monkeypatch: pytest.MonkeyPatch,
    report: ReliabilityReport,
) -> None:
    # Given a convert worker that dies after writing the first block of its chunk, once
    image_file = image_files["qcow2"]
    url = importer.upload(image_file.path, "disks/data.qcow2")
    put_block = SnapshotStore.put_block
    kills: list[int] = []
    blocks_written: list[int] = []

    def put_then_die(store: SnapshotStore, snapshot_id: str, block: Any) -> None:
        put_block(store, snapshot_id, block)
        blocks_written.append(block.index)
        if not kills:
            kills.append(block.index)
            raise WorkerKilledError()

    monkeypatch.setattr(SnapshotStore, "put_block", put_then_die)
    lambdas = importer.stack.lambdas
    invoke = lambdas.invoke

    def invoke_like_lambda(function: str, event: Any) -> tuple[str, bool]:
        # What Lambda answers Step Functions when the function's process exits mid-invocation.
        try:
            return invoke(function, event)
        except WorkerKilledError:
            return (
                '{"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with error: signal: killed"}',
                True,
            )

    monkeypatch.setattr(lambdas, "invoke", invoke_like_lambda)

    # When the file is imported
    started = time.monotonic()
    job = importer.wait_for_end(importer.start(url))
    seconds = time.monotonic() - started

    # Then the worker was killed once, its chunk ran again, and the import succeeded
    assert len(kills) == 1
    assert blocks_written.count(kills[0]) == 2
    assert job["status"] == "SUCCESS", job
    # And progress counted the re-run chunk once
    assert job["entities"]["process_percent"] == 1
    stored = importer.stack.table("JobsTable").get_item(Key={"job_id": job["job_id"]})["Item"]
    assert stored["bytes_done"] == stored["bytes_total"]
    # And the snapshot is exact
    assert_snapshot_is_exact(importer, job, image_file)
    report.add(
        "faults",
        case="convert-worker-killed",
        fault="convert worker killed after its first PutSnapshotBlock (Runtime.ExitError)",
        injected=1,
        sdk_retries=len(importer.sleeps.sdk),
        step_retries=len(importer.sleeps.state_machine),
        status=job["status"],
        error_code=job["error_code"],
        bytes_exact=True,
        seconds=round(seconds, 2),
    )


def execution_event(importer: Importer, job_id: str, status: str) -> dict[str, Any]:
    """What the template's EventBridge rule hands MarkFailed when an execution ends badly (moto emits none)."""
    # The whole envelope EventBridge delivers (Step Functions' "Execution Status Change" event).
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "source": "aws.states",
        "account": importer.stack.local.account_id,
        "time": "2026-12-01T12:00:00Z",
        "region": importer.stack.local.region,
        "resources": [importer.execution_arn(job_id)],
        "detail-type": "Step Functions Execution Status Change",
        "detail": {
            "executionArn": importer.execution_arn(job_id),
            "stateMachineArn": importer.stack.local.arn("ImportDataImageStateMachine"),
            "name": job_id,
            "status": status,
            "error": None,
            "cause": None,
        },
    }


class Gate:
    """Holds a step at one point until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        assert self.released.wait(30), "the test never released the gate"


def abort_while(
    importer: Importer, gate: Gate, job_id: str, held_step_done: threading.Event
) -> tuple[dict[str, Any], str]:
    """Stop the execution while the gate holds a step, deliver the EventBridge event, then let the step go on."""
    assert gate.reached.wait(30), "the import never reached the gate"
    boto3.client("stepfunctions").stop_execution(executionArn=importer.execution_arn(job_id), error="Stopped")
    mark_failed = importer.stack.lambdas.handler("MarkFailedFunction")
    mark_failed(execution_event(importer, job_id, "ABORTED"), importer.stack.lambdas.context("MarkFailedFunction"))
    gate.released.set()
    status = importer.wait_for_execution(job_id)
    # The held step runs on to its end, as a Lambda invocation outlives the execution that started it.
    assert held_step_done.wait(30), "the held step never finished"
    return importer.job(job_id), status


@pytest.mark.parametrize(
    ("step", "function", "held_method"),
    # (the worker of the import's last chunk seals the snapshot and registers the image: that is where it waits)
    [("convert", "ConvertChunkFunction", "put_block"), ("register", "ConvertChunkFunction", "wait_until_completed")],
)
def test_an_execution_stopped_from_outside_ends_fail_with_no_snapshot_left(
    step: str,
    function: str,
    held_method: str,
    importer: Importer,
    image_files: dict[str, ImageFile],
    monkeypatch: pytest.MonkeyPatch,
    report: ReliabilityReport,
) -> None:
    # Given an import held in the middle of a step: convert before its first block, register once sealed
    url = importer.upload(image_files["qcow2"].path, "disks/data.qcow2")
    gate = Gate()
    original = getattr(SnapshotStore, held_method)

    def held(store: SnapshotStore, *args: Any, **kwargs: Any) -> Any:
        if step == "convert" and not gate.reached.is_set():
            gate.hold()
        result = original(store, *args, **kwargs)
        if step == "register":
            gate.hold()
        return result

    monkeypatch.setattr(SnapshotStore, held_method, held)
    lambdas = importer.stack.lambdas
    invoke = lambdas.invoke
    held_step_done = threading.Event()

    def invoke_and_note_the_end(name: str, event: Any) -> tuple[str, bool]:
        try:
            return invoke(name, event)
        finally:
            if lambdas.logical_id(name) == function and gate.reached.is_set():
                held_step_done.set()

    monkeypatch.setattr(lambdas, "invoke", invoke_and_note_the_end)

    # When the execution is stopped (as a person or a deployment would) and EventBridge reports it
    job_id = importer.start(url)
    job, status = abort_while(importer, gate, job_id, held_step_done)

    # Then the execution is ABORTED and the job FAIL, saying it was stopped
    assert status in ("ABORTED", "FAILED")  # moto lets a stopped execution still take its Catch
    assert job["status"] == "FAIL", job
    assert job["error_code"] == "IMG.1075"
    assert "stopped" in job["fail_reason"]
    # And the image is killed, and no snapshot is left, pending or completed
    image = importer.image_record(importer.job(job_id)["entities"]["image_id"])
    assert image["status"] == "killed", image
    assert importer.snapshots() == {}
    report.add(
        "faults",
        case=f"execution-aborted-during-{step}",
        fault=f"StopExecution while {step} runs, then the EventBridge event to MarkFailed",
        injected=1,
        sdk_retries=len(importer.sleeps.sdk),
        step_retries=len(importer.sleeps.state_machine),
        status=job["status"],
        error_code=job["error_code"],
        bytes_exact=None,
        seconds=None,
    )


def test_a_mark_failed_that_read_the_job_before_register_ended_it_leaves_the_import_alone(
    importer: Importer, image_files: dict[str, ImageFile]
) -> None:
    # Given an import Register has ended, its image set back to `saving` to show whether anything touches it
    image_file = image_files["raw"]
    job = importer.import_file(image_file.path, "disks/data.raw")
    assert job["status"] == "SUCCESS", job
    image_id = job["entities"]["image_id"]
    importer.stack.table("ImagesTable").update_item(
        Key={"id": image_id},
        UpdateExpression="SET #status = :saving",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":saving": "saving"},
    )
    snapshot_id = importer.image_record(image_id)["snapshot_id"]
    # and a MarkFailed (from the EventBridge rule on a stopped execution) that read the job before Register ended it

    class JobReadBeforeRegisterEndedIt(JobStore):
        reads = 0

        def get(self, job_id: str) -> Any:
            self.reads += 1
            found = super().get(job_id)
            if self.reads == 1 and found is not None:
                return found.model_copy(update={"status": "RUNNING", "end_time": None})
            return found

    # When it goes on to end the import
    outcome = mark_import_failed(
        FailedImport.from_event(execution_event(importer, job["job_id"], "ABORTED")),
        Stores(jobs=JobReadBeforeRegisterEndedIt()),
    )

    # Then it changes nothing: the job stays SUCCESS, the image is not killed, its snapshot is intact
    assert outcome.error_code is None
    assert outcome.snapshots_deleted == []
    assert importer.job(job["job_id"])["status"] == "SUCCESS"
    assert importer.image_record(image_id)["status"] == "saving"
    assert importer.snapshot_blocks(snapshot_id) == nonzero_blocks(image_file.oracle)
