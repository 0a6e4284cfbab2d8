"""Fixtures for tests that run whole imports: no real waiting, small chunks, image files and their oracle.

Step Functions' Retry intervals really sleep in moto's interpreter; `no_retry_sleep` skips the waits and
records them, so a test can still see that a step was retried.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from diskport.engine import BLOCK_SIZE
from diskport.settings import get_settings
from diskport.stores import aws

from diskport_local.export import nonzero_blocks, snapshot_contents

KIB = 1024
MIB = 1024 * KIB
# Not a multiple of a block: the snapshot's last block is partial and must come back zero-padded.
DISK_SIZE = 5 * MIB + 300 * KIB
QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi", "raw": "raw"}
# Variants whose data the engine decodes differently: compressed clusters and grains, a footer-only VHD.
VARIANTS = {
    "qcow2-compressed": ("qcow2", ("-c", "-O", "qcow2")),
    "vmdk-streamOptimized": ("vmdk", ("-O", "vmdk", "-o", "subformat=streamOptimized")),
    "vhd-fixed": ("vhd", ("-O", "vpc", "-o", "subformat=fixed")),
}


@dataclass(frozen=True)
class ImageFile:
    """An image file to upload, and qemu-img's reading of it as a raw disk (what the snapshot must hold)."""

    path: Path
    format: str
    oracle: Path


@dataclass
class RetrySleeps:
    """The waits the state machine's Retry rules asked for, skipped."""

    seconds: list[float]


@pytest.fixture
def no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> RetrySleeps:
    sleeps = RetrySleeps([])
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=sleeps.seconds.append))
    return sleeps


@pytest.fixture
def without_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's EC2 otherwise loads a thousand public AMIs and their snapshots on first use, seconds per test."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def importer(
    without_default_amis: None, running_stack: Any, no_retry_sleep: RetrySleeps, monkeypatch: pytest.MonkeyPatch
) -> Importer:
    """Imports on the running stack, with disks cut into chunks of two blocks so each runs several convert workers."""
    monkeypatch.setenv("CHUNK_BYTES", str(2 * BLOCK_SIZE))
    get_settings.cache_clear()
    return Importer(running_stack, no_retry_sleep)


@pytest.fixture(scope="session")
def pattern_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sparse raw disk: data at unaligned offsets, a whole block of zeros between data, data in the last block."""
    path = tmp_path_factory.mktemp("disks") / "pattern.disk"
    with path.open("wb") as file:
        file.truncate(DISK_SIZE)
        for offset, data in (
            (1234, b"first block " * 100),
            (BLOCK_SIZE - 10, bytes(range(1, 200))),  # crosses from block 0 into block 1
            (3 * BLOCK_SIZE + 5, b"\xa5" * (BLOCK_SIZE + 77)),  # block 2 stays all zeros
            (DISK_SIZE - 100, b"the end" * 10),
        ):
            file.seek(offset)
            file.write(data)
    return path


@pytest.fixture(scope="session")
def image_files(pattern_disk: Path) -> dict[str, ImageFile]:
    """The pattern disk in every format qemu-img writes, with the raw disk qemu-img reads back from each."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img builds the test images")
    files = {}
    recipes = {name: (name, ("-O", qemu_format)) for name, qemu_format in QEMU_FORMATS.items()} | VARIANTS
    for name, (disk_format, convert_options) in recipes.items():
        path = pattern_disk.with_name(f"pattern.{name}")
        _qemu_img("convert", "-f", "raw", *convert_options, str(pattern_disk), str(path))
        oracle = pattern_disk.with_name(f"pattern.{name}.oracle.raw")
        _qemu_img("convert", "-f", QEMU_FORMATS[disk_format], "-O", "raw", str(path), str(oracle))
        files[name] = ImageFile(path, disk_format, oracle)
    return files


def _qemu_img(*arguments: str) -> None:
    subprocess.run(["qemu-img", *arguments], check=True, capture_output=True)


@dataclass
class Importer:
    """Drives imports on the running stack the way a client and an uploader would, and looks at what they left."""

    stack: Any
    retry_sleeps: RetrySleeps
    snapshots_before: set[str] = field(default_factory=lambda: set(_all_snapshot_ids()))

    def upload(self, content: Path | bytes, key: str, *, bucket: str | None = None, **extra: Any) -> str:
        """Put an image file in the watched bucket (or `bucket`); answers its image_url."""
        bucket = bucket or self.stack.local.physical_name("WatchedBucket")
        body = content if isinstance(content, bytes) else content.read_bytes()
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, **extra)
        return f"{bucket}:{key}"

    def start(self, image_url: str, **fields: Any) -> str:
        request = {"name": "data-disk-1", "image_url": image_url, "min_disk": 40, **fields}
        answer = self.stack.call_api("POST", "/v1/cloudimages/dataimages/action", body=request)
        assert answer.status == 200, answer.body
        return str(answer.body["job_id"])

    def wait_for_end(self, job_id: str, timeout_seconds: float = 60) -> dict[str, Any]:
        """The job as the progress route answers it, once its execution has stopped."""
        deadline = time.monotonic() + timeout_seconds
        step_functions = boto3.client("stepfunctions")
        executions = self.stack.local.arn("ImportDataImageStateMachine").replace(":stateMachine:", ":execution:")
        while time.monotonic() < deadline:
            if step_functions.describe_execution(executionArn=f"{executions}:{job_id}")["status"] != "RUNNING":
                return self.job(job_id)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still running after {timeout_seconds} s")

    def import_file(self, content: Path | bytes, key: str, **fields: Any) -> dict[str, Any]:
        return self.wait_for_end(self.start(self.upload(content, key), **fields))

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.stack.call_api("GET", f"/v1/cloudimages/job/{job_id}")
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def image(self, image_id: str) -> dict[str, Any]:
        answer = self.stack.call_api("GET", "/v2/cloudimages", query={"id": image_id})
        assert answer.status == 200, answer.body
        (image,) = answer.body["images"]
        return dict(image)

    def images(self, **query: str) -> list[dict[str, Any]]:
        answer = self.stack.call_api("GET", "/v2/cloudimages", query=query)
        assert answer.status == 200, answer.body
        return list(answer.body["images"])

    @staticmethod
    def snapshot_blocks(snapshot_id: str) -> dict[int, bytes]:
        """Every block the snapshot holds, read back with GetSnapshotBlock."""
        return snapshot_contents(snapshot_id, ebs=boto3.client("ebs"))

    def snapshot_ids(self) -> list[str]:
        """The snapshots that exist now and did not before the test (moto starts with snapshots of its own)."""
        return sorted(set(_all_snapshot_ids()) - self.snapshots_before)

    def clients(self, service: str) -> list[Any]:
        """The service's client of each function (each calls AWS as its own role), where faults are injected."""
        lambdas = self.stack.lambdas
        made: dict[int, Any] = {}
        for function in lambdas.logical_ids:
            with lambdas.acting_as(function):
                client = aws.client(service)
            made[id(client)] = client
        return list(made.values())

    def fail_calls(
        self, service: str, operation: str, code: str, *, status: int = 400, times: int = 1, when: Any = None
    ) -> list[str]:
        """Make the service's client answer `code` to the next `times` calls of `operation` (matching `when`).

        The answer comes as if the client's own retries were already spent, which is what reaches the step.
        Answers the list of calls refused so far.
        """
        refused: list[str] = []
        lock = threading.Lock()

        def refuse(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
            with lock:
                if len(refused) >= times or (when is not None and not when(params)):
                    return None
                refused.append(operation)
            response = {
                "Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return SimpleNamespace(status_code=status, headers={}, content=b""), response

        for client in self.clients(service):
            client.meta.events.register(f"before-call.{service}.{operation}", refuse)
        return refused

    def watch_calls(self, service: str, operation: str) -> list[dict[str, Any]]:
        """The requests (as serialized for the wire) the functions send to `operation` from now on."""
        seen: list[dict[str, Any]] = []
        for client in self.clients(service):
            client.meta.events.register(f"before-call.{service}.{operation}", lambda params, **_: seen.append(params))
        return seen

    def work_files(self) -> list[str]:
        listed = boto3.client("s3").list_objects_v2(Bucket=self.stack.local.physical_name("WorkBucket"))
        return [entry["Key"] for entry in listed.get("Contents", [])]


def _all_snapshot_ids() -> list[str]:
    snapshots = boto3.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return [snapshot["SnapshotId"] for snapshot in snapshots]


@pytest.fixture(scope="session")
def oracle_blocks() -> Any:
    """What a snapshot of a raw disk must hold: its non-zero blocks."""
    return nonzero_blocks
