"""`diskport smoke`: prove a stack imports for real, and leave nothing behind.

    diskport smoke --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com --upload-bucket BUCKET
    diskport smoke                                  (against local mode)

It generates a small raw disk (data blocks with holes between, in a pattern unique to the run), uploads it,
imports it through the IMS API, reads the snapshot back with the EBS direct APIs (ListSnapshotBlocks,
GetSnapshotBlock, each block checked against its SHA-256), and compares every block with the disk's. Then it
deletes what it made: the image (IMS's DELETE /v2/images/{image_id}, where the stack serves it), the snapshot,
and the uploaded file. It prints a JSON summary; the exit status is 0 only if the bytes matched.

The same code runs against local mode in the test suite (tests/e2e/test_smoke.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from diskport.errors import DiskportError

from diskport_local.command_help import add_command
from diskport_local.export import EBS_BLOCK_BYTES, snapshot_contents

# Blocks of the generated disk that hold data; the others are holes (zeros), which the import must skip.
SMOKE_DISK_BLOCKS = 12
DATA_BLOCKS = (0, 1, 4, 7, 11)
SMOKE_MIN_DISK_GB = 40
# An object name no watched-bucket notification matches (they filter on disk image suffixes), so uploading the
# smoke disk to the watched bucket starts no second import.
SMOKE_OBJECT_NAME = "smoke-disk.bin"


class SmokeTestError(DiskportError):
    """The stack did not import the disk as it holds it."""

    code = "IMG.1075"
    http_status = 500


@dataclass
class SmokeResult:
    passed: bool = False
    job_id: str | None = None
    image_id: str | None = None
    snapshot_id: str | None = None
    blocks_compared: int = 0
    mismatched_blocks: list[int] = field(default_factory=list)
    import_seconds: float = 0.0
    read_back_seconds: float = 0.0
    deleted: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    failure: str | None = None


def smoke_disk(run_id: str) -> bytes:
    """A raw disk of SMOKE_DISK_BLOCKS blocks: DATA_BLOCKS hold bytes derived from `run_id`, the rest are zeros.

    Block 0 starts with a plain-text header, so no disk format's signature can be read into it: it imports as raw.
    """
    disk = bytearray(SMOKE_DISK_BLOCKS * EBS_BLOCK_BYTES)
    for index in DATA_BLOCKS:
        seed = hashlib.sha256(f"{run_id}:{index}".encode()).digest()
        pattern = b"".join(hashlib.sha256(seed + counter.to_bytes(4, "big")).digest() for counter in range(512))
        disk[index * EBS_BLOCK_BYTES : (index + 1) * EBS_BLOCK_BYTES] = pattern * (EBS_BLOCK_BYTES // len(pattern))
    header = f"diskport smoke test {run_id}\n".encode().ljust(512, b".")
    disk[: len(header)] = header
    return bytes(disk)


def expected_blocks(disk: bytes) -> dict[int, bytes]:
    """The blocks a snapshot of `disk` must hold: every block that is not all zeros."""
    blocks = {}
    for index in range(0, len(disk) // EBS_BLOCK_BYTES):
        block = disk[index * EBS_BLOCK_BYTES : (index + 1) * EBS_BLOCK_BYTES]
        if block.count(0) != len(block):
            blocks[index] = block
    return blocks


def run_smoke_test(target: Any, bucket: str, *, poll_seconds: float, wait_for_job: Any) -> SmokeResult:
    """Import a generated disk on `target` (a cli.Target), compare its snapshot with it, delete what was made."""
    run_id = uuid.uuid4().hex[:12]
    disk = smoke_disk(run_id)
    key = f"diskport-smoke/{run_id}/{SMOKE_OBJECT_NAME}"
    s3, ebs, ec2 = target.aws_client("s3"), target.aws_client("ebs"), target.aws_client("ec2")
    result = SmokeResult()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=disk)
        started = time.monotonic()
        result.job_id = target.api.create_data_image(
            {"name": f"diskport-smoke-{run_id}", "image_url": f"{bucket}:{key}", "min_disk": SMOKE_MIN_DISK_GB}
        )
        job = wait_for_job(target.api, result.job_id, poll_seconds=poll_seconds, timeout_seconds=1800)
        result.import_seconds = round(time.monotonic() - started, 1)
        result.image_id = (job.get("entities") or {}).get("image_id")
        if job["status"] != "SUCCESS" or not result.image_id:
            raise SmokeTestError(f"The import failed: {job.get('error_code')}: {job.get('fail_reason')}")
        (image,) = target.api.images(result.image_id)
        result.snapshot_id = str(image["diskport_snapshot_id"])

        started = time.monotonic()
        stored = snapshot_contents(result.snapshot_id, ebs=ebs)
        result.read_back_seconds = round(time.monotonic() - started, 1)
        expected = expected_blocks(disk)
        result.blocks_compared = len(expected)
        result.mismatched_blocks = sorted(
            index for index in set(expected) | set(stored) if stored.get(index) != expected.get(index)
        )
        if result.mismatched_blocks:
            raise SmokeTestError(f"The snapshot differs from the disk in blocks {result.mismatched_blocks}.")
        result.passed = True
    except (DiskportError, ClientError) as error:
        result.failure = str(error)
    finally:
        _clean_up(target, result, s3, ec2, bucket, key)
    return result


def _clean_up(target: Any, result: SmokeResult, s3: Any, ec2: Any, bucket: str, key: str) -> None:
    if result.image_id is not None:
        try:
            target.api.call("DELETE", f"/v2/images/{result.image_id}")
            result.deleted.append(f"image {result.image_id}")
        except DiskportError as error:
            # A stack without IMS's delete route (404) keeps the record; its snapshot goes below all the same.
            why = "the stack has no DELETE /v2/images" if error.http_status == 404 else f"{error.code}: {error.reason}"
            result.left_behind.append(f"image record {result.image_id} ({why})")
    if result.snapshot_id is not None:
        try:
            ec2.delete_snapshot(SnapshotId=result.snapshot_id)
            result.deleted.append(f"snapshot {result.snapshot_id}")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidSnapshot.NotFound":
                result.deleted.append(f"snapshot {result.snapshot_id}")  # the image's deletion took it
            else:
                result.left_behind.append(f"snapshot {result.snapshot_id} ({error})")
    try:
        s3.delete_object(Bucket=bucket, Key=key)
        result.deleted.append(f"s3://{bucket}/{key}")
    except ClientError as error:
        result.left_behind.append(f"s3://{bucket}/{key} ({error})")


def _ensure_local_bucket(s3: Any, bucket: str) -> None:
    """Local mode reads any bucket in the emulator: make the one asked for if it is not there yet."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


# ---------------------------------------------------------------------------------------------- the command
def add_smoke_command(commands: Any, remote: argparse.ArgumentParser, reaches_aws: argparse.ArgumentParser) -> None:
    smoke_command = add_command(commands, "smoke", run_smoke, parents=[remote, reaches_aws])
    smoke_command.add_argument(
        "--upload-bucket",
        help="where the generated disk goes: a bucket the stack reads, such as its WatchedBucketName output "
        "(local mode: diskport-uploads)",
    )
    smoke_command.add_argument("--poll-seconds", type=float, help="seconds between job polls (1 local, 5 deployed)")
    smoke_command.set_defaults(run=run_smoke)


def run_smoke(arguments: argparse.Namespace) -> int:
    """Import a generated disk, read its snapshot back, compare, delete it all.

    Example: diskport smoke --endpoint https://abc123.execute-api.eu-west-1.amazonaws.com
    --upload-bucket diskport-watched-123456789012-1a2b3c4d
    """
    from diskport_local.cli import CommandError, target_of, wait_for_job

    target = target_of(arguments)
    bucket = arguments.upload_bucket
    if bucket is None:
        if not target.is_local:
            raise CommandError("Name a bucket the stack reads (its WatchedBucketName output) with --upload-bucket.")
        from diskport_local.server import UPLOADS_BUCKET

        bucket = UPLOADS_BUCKET
    if target.is_local:
        _ensure_local_bucket(target.aws_client("s3"), bucket)
    poll_seconds = arguments.poll_seconds or (1 if target.is_local else 5)
    result = run_smoke_test(target, bucket, poll_seconds=poll_seconds, wait_for_job=wait_for_job)
    print(json.dumps(asdict(result), indent=2))
    if not result.passed:
        print(f"diskport: the smoke test failed: {result.failure}", file=sys.stderr)
        return 1
    print(
        f"diskport: the smoke test passed: {result.blocks_compared} blocks read back as written "
        f"(import {result.import_seconds} s, read back {result.read_back_seconds} s)",
        file=sys.stderr,
    )
    return 0
