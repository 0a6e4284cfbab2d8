"""Local mode as a user runs it: `diskport serve` in its own process, reached over HTTP only.

The process listens on free ports, so these tests run while a developer's `make run` holds 3000 and 5000.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

PROJECT_ID = "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0"
STARTUP_SECONDS = 180  # a loaded 2-core CI machine can take a while to import and provision everything
MIB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass
class LocalModeProcess:
    """A running `diskport serve`, and the ways a user reaches it: HTTP, the AWS endpoint, the CLI."""

    api_url: str
    aws_url: str
    environment: dict[str, str]
    log: Path

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            self.api_url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return Answer(answer.status, json.loads(answer.read() or b"null"))
        except urllib.error.HTTPError as error:
            return Answer(error.code, json.loads(error.read() or b"null"))

    def cli(self, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "diskport_local.cli", *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def aws_client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def wait_for_job(self, job_id: str, timeout_seconds: float = 240) -> dict[str, Any]:
        """The job once it has ended, read by the IMS job route."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            answer = self.call("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}")
            assert answer.status == 200, answer.body
            if answer.body["status"] in ("SUCCESS", "FAIL"):
                return dict(answer.body)
            assert time.monotonic() < deadline, f"job {job_id} still {answer.body['status']}; see {self.log}"
            time.sleep(0.5)


def _endpoints_once_serving(process: subprocess.Popen[bytes], log: Path) -> tuple[str, str]:
    """The API and AWS URLs local mode prints once it serves (it picked free ports itself)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        banner = log.read_text(errors="replace")
        api = re.search(r"IMS API\s+(http://127\.0\.0\.1:\d+)", banner)
        emulator = re.search(r"AWS emulator\s+(http://127\.0\.0\.1:\d+)", banner)
        if api and emulator:
            return api.group(1), emulator.group(1)
        if process.poll() is not None:
            pytest.fail(f"diskport serve exited with {process.returncode}:\n{banner}")
        time.sleep(0.5)
    pytest.fail(f"diskport serve did not start within {STARTUP_SECONDS} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_local_mode(log: Path, *serve_options: str, **settings: str) -> Iterator[LocalModeProcess]:
    """`diskport serve` in its own process on free ports, with this process's environment less its AWS settings,
    the emulator's documented key, and `settings`; stopped on leaving."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    environment.update(
        LOCAL_API_PORT="0",  # free ports, chosen by the system: a developer's `make run` may hold 3000 and 5000
        LOCAL_AWS_PORT="0",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        **settings,
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", "serve", *serve_options],
            env=environment,
            stdout=output,
            stderr=output,
        )
    try:
        api_url, aws_url = _endpoints_once_serving(process, log)
        environment.update(LOCAL_API_PORT=api_url.rpartition(":")[2], LOCAL_AWS_PORT=aws_url.rpartition(":")[2])
        yield LocalModeProcess(api_url, aws_url, environment, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def local_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModeProcess]:
    with running_local_mode(
        tmp_path_factory.mktemp("local-mode") / "serve.log", LOCAL_PROJECT_ID=PROJECT_ID
    ) as running:
        yield running


@dataclass(frozen=True)
class SampleDisk:
    qcow2: Path
    raw: Path  # what the disk holds, byte for byte: what an export must give back


@pytest.fixture(scope="session")
def sample_disk(tmp_path_factory: pytest.TempPathFactory) -> SampleDisk:
    """A 6 MiB disk with data in a few places and holes between, as raw and as qcow2 (made by qemu-img)."""
    qemu_img = shutil.which("qemu-img")
    assert qemu_img, "qemu-img is needed (make setup installs it: Debian/Ubuntu package qemu-utils)"
    folder = tmp_path_factory.mktemp("disks")
    raw = folder / "sample.raw"
    with raw.open("wb") as disk:
        disk.truncate(6 * MIB)
        for offset, data in ((0, b"boot" * 4096), (MIB + 777, bytes(range(256)) * 900), (6 * MIB - 9, b"last byte")):
            disk.seek(offset)
            disk.write(data)
    qcow2 = folder / "sample.qcow2"
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    return SampleDisk(qcow2, raw)
