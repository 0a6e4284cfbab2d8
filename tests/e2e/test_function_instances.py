"""Local mode runs function instances as Lambda does: each in its own process, several at once."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from diskport import aws
from diskport.settings import get_settings

from diskport_local.aws_emulator.function_instances import most_at_once
from diskport_local.server import LocalMode, LocalModeOptions
from diskport_local.template import LocalStack

BLOCK = 524_288
CHUNKS = 8
PROJECT_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def local_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalMode]:
    """Local mode in this process, on free ports, cutting disks into chunks of two blocks."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # Each block write takes a while, as it would against EBS, so the chunks' runs are long enough to overlap.
    monkeypatch.setenv("DISKPORT_EBS_PUT_LATENCY_MS", "400")
    saved_environment = dict(os.environ)
    mode = LocalMode(
        LocalModeOptions(api_port=0, aws_port=0, project_id=PROJECT_ID),
        LocalStack(parameters={"ChunkBytes": str(2 * BLOCK)}),
    )
    try:
        mode.start()
        yield mode
    finally:
        mode.stop()
        os.environ.clear()
        os.environ.update(saved_environment)
        get_settings.cache_clear()
        aws.forget_clients()


def call(mode: LocalMode, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(
        mode.api_url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def test_a_map_of_eight_chunks_runs_at_least_four_of_them_at_the_same_time(local_mode: LocalMode, tmp_path: Path) -> None:
    # Given a raw disk of eight chunks, every block holding data, in a bucket of the emulator
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"".join(bytes([index + 1]) * BLOCK for index in range(2 * CHUNKS)))
    s3 = boto3.client(
        "s3",
        endpoint_url=local_mode.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="parallel")
    s3.upload_file(str(disk), "parallel", "disk.raw")
    assert local_mode.functions is not None
    local_mode.functions.warm_up("ConvertChunkFunction", instances=4)  # provisioned, so cold starts do not blur it

    # When it is imported
    job_id = call(
        local_mode,
        "POST",
        "/v1/cloudimages/dataimages/action",
        {"name": "parallel", "image_url": "parallel:disk.raw", "min_disk": 40},
    )["job_id"]
    deadline = time.monotonic() + 240
    while (job := call(local_mode, "GET", f"/v1/{PROJECT_ID}/jobs/{job_id}"))["status"] not in ("SUCCESS", "FAIL"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)

    # Then it succeeded, and the convert function ran at least four chunks at the same moment
    assert job["status"] == "SUCCESS", job
    convert_runs = [run for run in local_mode.functions.invocations if run.function == "ConvertChunkFunction"]
    assert len(convert_runs) == CHUNKS
    assert most_at_once(local_mode.functions.invocations, "ConvertChunkFunction") >= 4
