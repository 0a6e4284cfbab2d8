"""Local mode runs functions as Lambda does: each instance its own process, several at once, as its own role."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from diskport.settings import get_settings
from diskport.stores import aws

from diskport_emulator import LocalStack
from diskport_local.server import LocalMode, LocalModeOptions
from tests.support.function_roles import without_action
from tests.support.invocations import most_at_once

BLOCK = 524_288
CHUNKS = 8
PROJECT_ID = "0123456789abcdef0123456789abcdef"


LocalModeStarter = Callable[[LocalStack], LocalMode]


@pytest.fixture
def start_local_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalModeStarter]:
    """Starts local mode in this process, on free ports, cutting disks into chunks of two blocks."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # Each block write takes a while, as it would against EBS, so the chunks' runs are long enough to overlap.
    monkeypatch.setenv("DISKPORT_EBS_PUT_LATENCY_MS", "400")
    saved_environment = dict(os.environ)
    started: list[LocalMode] = []

    def start(stack: LocalStack) -> LocalMode:
        mode = LocalMode(LocalModeOptions(api_port=0, aws_port=0, project_id=PROJECT_ID), stack)
        started.append(mode)
        mode.start()
        return mode

    try:
        yield start
    finally:
        for mode in started:
            mode.stop()
        os.environ.clear()
        os.environ.update(saved_environment)
        get_settings.cache_clear()
        aws.forget_clients()


def chunked_stack(**parameters: str) -> LocalStack:
    return LocalStack(parameters={"ChunkBytes": str(2 * BLOCK), **parameters})


def import_disk(mode: LocalMode, disk: Path) -> dict[str, Any]:
    """Upload the disk as a person would (the README's credentials) and import it through the API, to its end."""
    s3 = boto3.client(
        "s3",
        endpoint_url=mode.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="disks")
    s3.upload_file(str(disk), "disks", disk.name)
    job_id = call(
        mode,
        "POST",
        "/v1/cloudimages/dataimages/action",
        {"name": "disk", "image_url": f"disks:{disk.name}", "min_disk": 40},
    )["job_id"]
    deadline = time.monotonic() + 240
    while (job := call(mode, "GET", f"/v1/{PROJECT_ID}/jobs/{job_id}"))["status"] not in ("SUCCESS", "FAIL"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return dict(job)


def dense_disk(path: Path, blocks: int) -> Path:
    path.write_bytes(b"".join(bytes([index + 1]) * BLOCK for index in range(blocks)))
    return path


def call(mode: LocalMode, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(
        mode.api_url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def test_a_map_of_eight_chunks_runs_at_least_four_of_them_at_the_same_time(
    start_local_mode: LocalModeStarter, tmp_path: Path
) -> None:
    # Given local mode with the convert function's instances started, and a raw disk of eight chunks (one for the
    # worker beside Fetch, seven for the Map)
    mode = start_local_mode(chunked_stack(WorkersBesideFetch="1"))
    assert mode.functions is not None
    mode.functions.warm_up("ConvertChunkFunction", instances=4)  # provisioned, so cold starts do not blur it
    disk = dense_disk(tmp_path / "disk.raw", 2 * CHUNKS)

    # When it is imported
    job = import_disk(mode, disk)

    # Then it succeeded, and the convert function ran at least four chunks at the same moment
    assert job["status"] == "SUCCESS", job
    convert_runs = [run for run in mode.functions.invocations if run.function == "ConvertChunkFunction"]
    assert len(convert_runs) == CHUNKS
    assert most_at_once(mode.functions.invocations, "ConvertChunkFunction") >= 4


def test_a_function_whose_policy_lacks_an_action_it_calls_fails_its_step(
    start_local_mode: LocalModeStarter, tmp_path: Path
) -> None:
    # Given a template whose convert and register functions (the last chunk's worker seals the snapshot, Register
    # when it could not) may no longer complete snapshots
    stack = chunked_stack()
    for function in ("ConvertChunkFunction", "RegisterImageFunction"):
        without_action(stack, function, "ebs:CompleteSnapshot")
    mode = start_local_mode(stack)

    # When a disk is imported
    job = import_disk(mode, dense_disk(tmp_path / "disk.raw", 2))

    # Then the import failed, at the step that completes the snapshot, for want of the permission
    assert job["status"] == "FAIL", job
    history = boto3.client(
        "stepfunctions",
        endpoint_url=mode.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    executions = history.list_executions(stateMachineArn=stack.arn("ImportDataImageStateMachine"))["executions"]
    events = history.get_execution_history(executionArn=executions[0]["executionArn"], maxResults=1000)["events"]
    failures = [
        json.loads(event["taskFailedEventDetails"]["cause"])["errorMessage"]
        for event in events
        if event["type"] == "TaskFailed"
    ]
    assert any("CompleteSnapshot" in failure and "AccessDenied" in failure for failure in failures), failures
