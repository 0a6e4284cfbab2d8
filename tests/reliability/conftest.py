"""Fixtures for the reliability suites: whole imports on the emulated stack, and the oracle of their bytes.

Imports run the real ASL on moto's Step Functions interpreter with the handlers in-process (`running_stack`).
Step Functions' Retry waits and botocore's own retry back-off really sleep; here they are skipped and
counted, so a suite can show that a step or a request was retried without waiting for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from diskport.engine import BLOCK_SIZE
from diskport.settings import get_settings

from diskport_local.export import snapshot_contents

KIB = 1024
MIB = 1024 * KIB
QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi", "raw": "raw"}
IMPORT_TIMEOUT_SECONDS = 60.0


@dataclass
class SkippedSleeps:
    """The waits Step Functions' Retry rules and botocore's retry back-off asked for, skipped."""

    state_machine: list[float] = field(default_factory=list)
    sdk: list[float] = field(default_factory=list)


@pytest.fixture
def skipped_sleeps(monkeypatch: pytest.MonkeyPatch) -> SkippedSleeps:
    sleeps = SkippedSleeps()
    import botocore.endpoint
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=sleeps.state_machine.append))
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=sleeps.sdk.append, time=time.time))
    return sleeps


def qemu_img(*arguments: str) -> None:
    subprocess.run(["qemu-img", *arguments], check=True, capture_output=True)


@pytest.fixture(scope="session")
def qemu_available() -> None:
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        pytest.skip("qemu-img and qemu-io build the test images")


@dataclass(frozen=True)
class ImageFile:
    """An image file to upload, and qemu-img's reading of it as a raw disk (what the snapshot must hold)."""

    path: Path
    format: str
    oracle: Path


def write_sparse_disk(path: Path, size: int, seed: int) -> Path:
    """A raw disk with data at unaligned offsets, a whole zero block between data, data in its partial last block."""
    pattern = bytes((seed * 31 + index * 7) % 251 + 1 for index in range(4096))
    with path.open("wb") as file:
        file.truncate(size)
        for offset, length in ((1234, 3000), (BLOCK_SIZE - 10, 200), (3 * BLOCK_SIZE + 5, BLOCK_SIZE + 77)):
            file.seek(offset)
            file.write((pattern * (length // len(pattern) + 1))[:length])
        file.seek(size - 100)
        file.write(seed.to_bytes(4, "big") * 25)
    return path


def image_file(directory: Path, disk: Path, disk_format: str) -> ImageFile:
    """`disk` converted to `disk_format` by qemu-img, with qemu-img's raw reading of the result."""
    path = directory / f"{disk.stem}.{disk_format}"
    qemu_img("convert", "-f", "raw", "-O", QEMU_FORMATS[disk_format], str(disk), str(path))
    oracle = directory / f"{disk.stem}.{disk_format}.oracle.raw"
    qemu_img("convert", "-f", QEMU_FORMATS[disk_format], "-O", "raw", str(path), str(oracle))
    return ImageFile(path, disk_format, oracle)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory, qemu_available: None) -> dict[str, ImageFile]:
    """A 5.3 MiB sparse disk in every format the service imports."""
    directory = tmp_path_factory.mktemp("reliability-images")
    disk = write_sparse_disk(directory / "disk.bin", 5 * MIB + 300 * KIB, seed=1)
    return {disk_format: image_file(directory, disk, disk_format) for disk_format in QEMU_FORMATS}


@dataclass
class Importer:
    """Drives imports on the running stack as a client would, and looks at what they left behind."""

    stack: Any
    sleeps: SkippedSleeps

    @property
    def bucket(self) -> str:
        return str(self.stack.local.physical_name("WatchedBucket"))

    def upload(self, content: Path | bytes, key: str) -> str:
        body = content if isinstance(content, bytes) else content.read_bytes()
        boto3.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"{self.bucket}:{key}"

    def start(self, image_url: str, *, project_id: str | None = None, **fields: Any) -> str:
        request = {"name": "data-disk-1", "image_url": image_url, "min_disk": 40, **fields}
        extra = {"project_id": project_id} if project_id else {}
        answer = self.stack.call_api("POST", "/v1/cloudimages/dataimages/action", body=request, **extra)
        assert answer.status == 200, answer.body
        return str(answer.body["job_id"])

    def execution_arn(self, job_id: str) -> str:
        machine = self.stack.local.arn("ImportDataImageStateMachine")
        return f"{machine.replace(':stateMachine:', ':execution:')}:{job_id}"

    def wait_for_execution(self, job_id: str, timeout_seconds: float = IMPORT_TIMEOUT_SECONDS) -> str:
        """The execution's final status, once it has stopped."""
        deadline = time.monotonic() + timeout_seconds
        step_functions = boto3.client("stepfunctions")
        while time.monotonic() < deadline:
            status = str(step_functions.describe_execution(executionArn=self.execution_arn(job_id))["status"])
            if status != "RUNNING":
                return status
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still running after {timeout_seconds} s")

    def wait_for_end(self, job_id: str, *, project_id: str | None = None) -> dict[str, Any]:
        self.wait_for_execution(job_id)
        return self.job(job_id, project_id=project_id)

    def import_file(self, content: Path | bytes, key: str, **fields: Any) -> dict[str, Any]:
        return self.wait_for_end(self.start(self.upload(content, key), **fields))

    def job(self, job_id: str, *, project_id: str | None = None) -> dict[str, Any]:
        extra = {"project_id": project_id} if project_id else {}
        answer = self.stack.call_api("GET", f"/v1/cloudimages/job/{job_id}", **extra)
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def images(self, *, project_id: str | None = None, **query: str) -> list[dict[str, Any]]:
        extra = {"project_id": project_id} if project_id else {}
        answer = self.stack.call_api("GET", "/v2/cloudimages", query=query or None, **extra)
        assert answer.status == 200, answer.body
        return list(answer.body["images"])

    def image_record(self, image_id: str) -> dict[str, Any]:
        """The stored image record, whoever owns it."""
        return dict(self.stack.table("ImagesTable").get_item(Key={"id": image_id})["Item"])

    @staticmethod
    def snapshot_blocks(snapshot_id: str) -> dict[int, bytes]:
        """Every block the snapshot holds, read back with the EBS direct API (ListSnapshotBlocks, GetSnapshotBlock)."""
        return snapshot_contents(snapshot_id, ebs=boto3.client("ebs"))

    @staticmethod
    def snapshots() -> dict[str, str]:
        """The account's snapshots that still exist, with their state."""
        found = boto3.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
        return {snapshot["SnapshotId"]: snapshot["State"] for snapshot in found}

    def work_files(self) -> list[str]:
        listed = boto3.client("s3").list_objects_v2(Bucket=self.stack.local.physical_name("WorkBucket"))
        return [entry["Key"] for entry in listed.get("Contents", [])]


@pytest.fixture
def snapshots_pending_until_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    """EBS keeps a started snapshot `pending` until CompleteSnapshot; moto's EC2 calls it `completed` at once,
    which would let Register skip CompleteSnapshot (and its checksum) entirely."""
    from moto.ebs.models import EBSBackend

    start_snapshot, complete_snapshot = EBSBackend.start_snapshot, EBSBackend.complete_snapshot

    def start_pending(backend: EBSBackend, *args: Any, **kwargs: Any) -> Any:
        started = start_snapshot(backend, *args, **kwargs)
        backend.ec2_backend.snapshots[started.snapshot_id].status = "pending"
        return started

    def complete(backend: EBSBackend, snapshot_id: str) -> str:
        backend.ec2_backend.snapshots[snapshot_id].status = "completed"
        return complete_snapshot(backend, snapshot_id)

    monkeypatch.setattr(EBSBackend, "start_snapshot", start_pending)
    monkeypatch.setattr(EBSBackend, "complete_snapshot", complete)


@pytest.fixture
def chunk_bytes() -> int:
    """Chunks of two blocks, so each import runs several convert workers; a module may override this fixture."""
    return 2 * BLOCK_SIZE


@pytest.fixture
def without_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 otherwise loads a thousand public AMIs and their snapshots on first use, seconds per test."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def importer(
    without_default_amis: None,
    running_stack: Any,
    snapshots_pending_until_completed: None,
    skipped_sleeps: SkippedSleeps,
    chunk_bytes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Importer]:
    """Imports on the running stack, with disks cut into chunks of `chunk_bytes`."""
    monkeypatch.setenv("CHUNK_BYTES", str(chunk_bytes))
    get_settings.cache_clear()
    yield Importer(running_stack, skipped_sleeps)


class ReliabilityReport:
    """Figures the suites measure, one row per case; `bench/reliability_report.py` prints them as tables.

    Rows are written, as JSON lines, only when DISKPORT_REPORT_DIR names a folder (one file per test process).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, suite: str, **row: Any) -> None:
        self.rows.append({"suite": suite, **row})

    def save(self, folder: str) -> None:
        if not self.rows:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with (Path(folder) / f"rows-{worker}-{os.getpid()}.jsonl").open("a") as file:
            for row in self.rows:
                file.write(json.dumps(row, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def report() -> Iterator[ReliabilityReport]:
    collected = ReliabilityReport()
    yield collected
    folder = os.environ.get("DISKPORT_REPORT_DIR")
    if folder:
        collected.save(folder)
