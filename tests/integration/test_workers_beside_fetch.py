"""Convert workers start with Fetch and take the plan's first chunks the moment Fetch publishes them.

Their Lambda starts run while Fetch works; those the plan has no chunk for, and all of them when Fetch refuses
the file, end without converting anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import boto3
import pytest
from diskport.engine import BLOCK_SIZE
from diskport.errors import PlanNotReadyError
from diskport.pipeline import convert
from diskport.stores import Stores
from diskport.stores.jobs import JobStore

from tests.support.executions import entered_states

# Eight chunks of two blocks each (the importer's CHUNK_BYTES), every block data.
DISK = bytes(range(256)) * (16 * BLOCK_SIZE // 256)


def test_the_workers_started_with_fetch_convert_a_small_plan_whole(
    importer: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a disk of eight chunks, the default sixteen workers beside Fetch, and a note of when each began waiting
    first_looks: list[str] = []
    original_first_chunks = JobStore.first_chunks

    def noting(store: JobStore, job_id: str) -> Any:
        published = original_first_chunks(store, job_id)
        first_looks.append("plan" if published.chunks is not None else "no plan yet")
        return published

    monkeypatch.setattr(JobStore, "first_chunks", noting)

    # When it is imported
    with caplog.at_level(logging.INFO, logger="diskport"):
        job = importer.import_file(DISK, "dense.raw")

    # Then the workers beside Fetch converted every chunk, and no Convert map ran
    assert job["status"] == "SUCCESS", job
    states = entered_states(importer, job["job_id"])
    assert states.count("ConvertFirstChunk") == 16
    assert "Convert" not in states
    assert "ConvertDistributed" not in states
    image = importer.image(job["entities"]["image_id"])
    blocks = importer.snapshot_blocks(image["diskport_snapshot_id"])
    assert blocks == {index: DISK[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE] for index in range(16)}
    # And some were waiting before Fetch had published the plan; the eight without a chunk said so
    assert "no plan yet" in first_looks
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("Chunk converted") == 8
    assert messages.count("No chunk for this worker") == 8


def test_a_file_fetch_refuses_ends_the_workers_waiting_beside_it(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file that claims to be a qcow2 of a version no qemu writes, and a count of the convert invocations
    lambdas = importer.stack.lambdas
    invoke, under_way, lock = lambdas.invoke, Counter[str](), threading.Lock()

    def counting(function: str, event: Any) -> tuple[str, bool]:
        name = lambdas.logical_id(function)
        with lock:
            under_way[name] += 1
        try:
            return invoke(function, event)
        finally:
            with lock:
                under_way[name] -= 1

    monkeypatch.setattr(lambdas, "invoke", counting)
    url = importer.upload(b"QFI\xfb\x00\x00\x00\x09" + bytes(1024 * 1024), "broken.qcow2")

    # When it is imported
    job = importer.wait_for_end(importer.start(url))

    # Then Fetch refused it, the workers waiting beside Fetch all ended soon after, and no snapshot was started
    assert job["status"] == "FAIL", job
    deadline = time.monotonic() + 10
    while under_way["ConvertChunkFunction"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert under_way["ConvertChunkFunction"] == 0
    assert importer.snapshot_ids() == []


def test_a_worker_beside_fetch_waits_for_the_plan_or_the_jobs_end(stack: Any) -> None:
    # Given a RUNNING job whose Fetch has published no plan
    bucket = stack.local.physical_name("WatchedBucket")
    boto3.client("s3").put_object(Bucket=bucket, Key="disk.raw", Body=DISK)
    answer = stack.call_api(
        "POST",
        "/v1/cloudimages/dataimages/action",
        body={"name": "d", "image_url": f"{bucket}:disk.raw", "min_disk": 40},
    )
    job_id = answer.body["job_id"]
    JobStore().mark_running(job_id)

    # When a worker beside Fetch has under a minute left, it gives up with PlanNotReadyError for the state machine
    # to start another, rather than run into Lambda's timeout
    with pytest.raises(PlanNotReadyError):
        convert.convert_first_chunk(job_id, 1, Stores(), seconds_left=lambda: 30.0)

    # And when the job ends while one waits, it ends too, without a chunk
    ended = threading.Timer(0.3, lambda: JobStore().mark_failed(job_id, error_code="IMG.1075", fail_reason="stop"))
    ended.start()
    started = time.monotonic()
    assert convert.convert_first_chunk(job_id, 1, Stores()) is None
    assert 0.25 <= time.monotonic() - started < 5
    ended.join()
