"""What the benches of `diskport serve` share: a dense image, local mode started on free ports, its API, its processes.

Local mode runs as a user runs it (`python -m diskport_local.cli serve`), with the function instances in processes
of their own, so what a bench measures is what `make run` does.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

MIB = 1024 * 1024
GIB = 1024 * MIB
BLOCK = 512 * 1024
PROJECT_ID = "0123456789abcdef0123456789abcdef"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The planner and pacing before the quota was shared, as settings of the functions' environment: chunks of 8 GiB of
# data (a disk of 8 GiB or less is one chunk), each paced to 900 / 16 = 56.25 PutSnapshotBlock/s with 8 writers.
FORMER_PLANNER_AND_PACING = {
    "MIN_CHUNK_BYTES": str(8 * GIB),
    "SNAPSHOT_PUTS_PER_SECOND": str(900 / 16),
    "WRITERS_PER_CHUNK": "8",
}


def dense_block(index: int, seed: int = 1) -> bytes:
    """The block `index` of a dense image: its index, then the same random filler as every other block."""
    return index.to_bytes(8, "little") + random.Random(seed).randbytes(BLOCK)[8:]


def dense_qcow2(size_gib: float, workdir: Path, seed: int = 1) -> Path:
    """A qcow2 whose every 512 KiB block holds data, each its own (`dense_block`)."""
    raw, image = workdir / "dense.raw", workdir / f"dense-{size_gib:g}g-{seed}.qcow2"
    if image.is_file():
        return image  # built by a run before (renamed only once whole)
    filler = dense_block(0, seed)[8:]
    with raw.open("wb") as file:
        for index in range(int(size_gib * GIB) // BLOCK):
            file.write(index.to_bytes(8, "little") + filler)
    building = image.with_suffix(".building")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(building)], check=True)
    raw.unlink()
    building.rename(image)
    return image


@dataclass
class LocalMode:
    """A running `diskport serve`: its process, the IMS API and the AWS emulator."""

    process: subprocess.Popen[bytes]
    api_url: str
    aws_url: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api_url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def client(self, service: str, **config: Any) -> Any:
        options = Config(read_timeout=1800, retries={"max_attempts": 1}, **config)
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=self.aws_url, region_name="us-east-1", config=options, **CREDENTIALS
        )

    def upload(self, image: Path, bucket: str = "bench", key: str = "dense.qcow2") -> str:
        """Upload the image as the CLI does (multipart); answers its `image_url`."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.upload_file(str(image), bucket, key)
        return f"{bucket}:{key}"

    def start_import(self, image_url: str, name: str = "dense") -> str:
        request = {"name": name, "image_url": image_url, "min_disk": 40}
        return str(self.call("POST", "/v1/cloudimages/dataimages/action", request)["job_id"])

    def wait(self, job_id: str, poll_seconds: float = 0.5) -> dict[str, Any]:
        while (job := self.call("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}"))["status"] not in ("SUCCESS", "FAIL"):
            time.sleep(poll_seconds)
        answer: dict[str, Any] = job
        return answer

    def snapshot_of(self, job: dict[str, Any]) -> str:
        image_id = job["entities"]["image_id"]
        listed = self.call("GET", f"/v2/cloudimages?id={image_id}")["images"][0]
        return str(listed["diskport_snapshot_id"])

    def snapshot_blocks(self, snapshot_id: str) -> Iterator[tuple[int, str]]:
        """(index, token) of every block the snapshot holds."""
        ebs = self.client("ebs")
        page: dict[str, Any] = {"NextToken": None}
        while "NextToken" in page:
            token = {"NextToken": page["NextToken"]} if page["NextToken"] else {}
            page = ebs.list_snapshot_blocks(SnapshotId=snapshot_id, MaxResults=10_000, **token)
            for block in page["Blocks"]:
                yield int(block["BlockIndex"]), str(block["BlockToken"])

    def holds_dense_image(self, snapshot_id: str, size_gib: float, seed: int = 1) -> bool:
        """Whether the snapshot holds exactly the blocks of `dense_qcow2(size_gib)`, byte for byte."""
        ebs = self.client("ebs")
        expected = int(size_gib * GIB) // BLOCK
        filler = dense_block(0, seed)[8:]
        found = 0
        for index, token in self.snapshot_blocks(snapshot_id):
            block = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockToken=token)
            if index >= expected or block["BlockData"].read() != index.to_bytes(8, "little") + filler:
                return False
            found += 1
        return found == expected


@contextmanager
def local_mode(log: Path, environment: Mapping[str, str] | None = None) -> Iterator[LocalMode]:
    """`diskport serve` on free ports with `environment` added to this process's (less its AWS and moto variables)."""
    variables = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    variables.update(LOCAL_API_PORT="0", LOCAL_AWS_PORT="0", LOCAL_PROJECT_ID=PROJECT_ID, **(environment or {}))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", "serve"], env=variables, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            banner = log.read_text(errors="replace")
            api = re.search(r"IMS API\s+(http://127\.0\.0\.1:\d+)", banner)
            emulator = re.search(r"AWS emulator\s+(http://127\.0\.0\.1:\d+)", banner)
            if api and emulator:
                break
            if process.poll() is not None:
                raise SystemExit(f"diskport serve ended before it started:\n{log.read_text()}")
            time.sleep(0.5)
        else:
            raise SystemExit(f"diskport serve did not start:\n{log.read_text()}")
        yield LocalMode(process, api.group(1), emulator.group(1))
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(frontier)
    return found


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
