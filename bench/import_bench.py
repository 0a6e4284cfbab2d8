"""End-to-end import of a sparse qcow2 in moto: the real ASL, the handlers in-process, the snapshot checked.

Builds a qcow2 of `--size-gib` virtual GiB with `--density` of its 1 MiB regions filled with random data, uploads it
to the emulated watched bucket, imports it through the API and reports:

- wall time from the POST to SUCCESS, and MiB/s of data converted;
- S3 GETs of the source file (ranged reads, pinned to its ETag) and of work files;
- EBS PutSnapshotBlock requests, and the bytes of virtual disk skipped (never read, or all zero);
- whether the snapshot equals `qemu-img convert -O raw` of the file, block by block.

    python bench/import_bench.py [--size-gib 1] [--density 0.4] [--chunk-mib 128] [--workdir DIR] [--no-verify]

moto holds the file and the snapshot in memory (about twice the data). The local runtime runs one invocation of
each function at a time, so the Map's chunks convert one after another here; the figures measure the pipeline's
own cost (engine, pacing, S3 and EBS calls), not Lambda's parallelism.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3

MIB = 1024 * 1024
GIB = 1024 * MIB
PROJECT_ID = "0123456789ab"
SOURCE_KEY = "bench/source.qcow2"


@dataclass
class CallCounts:
    """AWS calls the import made, counted at the client, by operation."""

    calls: Counter[str]
    lock: threading.Lock

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1


def build_image(workdir: Path, size: int, density: float, seed: int = 1) -> tuple[Path, Path, int]:
    """A qcow2 with `density` of its 1 MiB regions random, and qemu-img's raw reading of it (the oracle)."""
    generator = random.Random(seed)
    raw = workdir / "source.disk"
    filled = 0
    with raw.open("wb") as file:
        file.truncate(size)
        for region in range(size // MIB):
            if generator.random() < density:
                file.seek(region * MIB)
                file.write(os.urandom(MIB))
                filled += MIB
    image = workdir / "source.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    oracle = workdir / "oracle.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(oracle)], check=True)
    return image, oracle, filled


@contextmanager
def emulated_stack(chunk_bytes: int) -> Iterator[Any]:
    """The template's stack in moto, Step Functions running the real ASL, the handlers called in-process."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "1",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    from diskport.settings import get_settings
    from diskport.stores import aws

    from diskport_emulator import Emulator, LocalStack

    # The functions share this process's credentials (no act_as): what is measured is the pipeline, not IAM.
    with Emulator(LocalStack(parameters={"ChunkBytes": str(chunk_bytes)}), enforce_iam=False) as emulator:
        os.environ.update(emulator.process_environment())
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        get_settings.cache_clear()
        aws.forget_clients()
        yield emulator.stack, emulator.functions


def count_calls(counts: CallCounts, source_key: str) -> None:
    from diskport.stores import aws

    def on_s3_get(params: dict[str, Any], **_: Any) -> None:
        counts.count("S3 GET source" if source_key in params["url_path"] else "S3 GET work file")

    aws.client("s3").meta.events.register("before-call.s3.GetObject", on_s3_get)
    aws.client("ebs").meta.events.register(
        "before-call.ebs.PutSnapshotBlock", lambda **_: counts.count("EBS PutSnapshotBlock")
    )


def serve_source_ranges_from(image: Path, bucket: str, source_key: str) -> None:
    """Answer ranged GETs of the source object from the local file, as S3 would (206, IfMatch checked).

    moto reads the whole object for every ranged GET, which makes an emulated import quadratic in the file's size
    and measures moto rather than the pipeline. Every other call, and the HEAD that notes the ETag, still goes to
    moto; the ETag a read is pinned to must match the one moto reported.
    """
    from botocore.response import StreamingBody
    from diskport.stores import aws

    s3_client = aws.client("s3")
    etag = boto3.client("s3").head_object(Bucket=bucket, Key=source_key)["ETag"]

    def on_get(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        headers = params["headers"]
        if source_key not in params["url_path"] or "Range" not in headers:
            return None
        if headers.get("If-Match") != etag:
            raise AssertionError("a read of the source was not pinned to its ETag")
        start, _, end = headers["Range"].removeprefix("bytes=").partition("-")
        with image.open("rb") as file:
            file.seek(int(start))
            data = file.read(int(end) - int(start) + 1)
        metadata = {"HTTPStatusCode": 206, "HTTPHeaders": {}}
        parsed = {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data), "ETag": etag}
        return SimpleNamespace(status_code=206, headers={}, content=b""), {**parsed, "ResponseMetadata": metadata}

    s3_client.meta.events.register("before-call.s3.GetObject", on_get)


def run_import(stack: Any, lambdas: Any) -> tuple[str, float]:
    from diskport_emulator import http_api_event

    bucket = stack.physical_name("WatchedBucket")
    (route,) = [route for route in stack.api_routes() if route.path == "/v1/cloudimages/dataimages/action"]
    body = json.dumps({"name": "bench", "image_url": f"{bucket}:{SOURCE_KEY}", "min_disk": 40})
    event = http_api_event(route, path=route.path, body=body, account_id=PROJECT_ID)
    started = time.monotonic()
    answer = lambdas.handler(route.function)(event, lambdas.context(route.function))
    if answer["statusCode"] != 200:
        raise SystemExit(f"the import was refused: {answer['body']}")
    job_id = json.loads(answer["body"])["job_id"]
    executions = stack.arn("ImportDataImageStateMachine").replace(":stateMachine:", ":execution:")
    step_functions = boto3.client("stepfunctions")
    while step_functions.describe_execution(executionArn=f"{executions}:{job_id}")["status"] == "RUNNING":
        time.sleep(0.1)
    return job_id, time.monotonic() - started


def verify(snapshot_id: str, oracle: Path) -> tuple[bool, int]:
    """Whether the snapshot holds exactly the oracle's non-zero blocks; answers also the blocks it holds."""
    from diskport.engine import BLOCK_SIZE

    ebs = boto3.client("ebs")
    listed = {
        block["BlockIndex"]: block["BlockToken"] for block in ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
    }
    same = True
    with oracle.open("rb") as file:
        index = 0
        while data := file.read(BLOCK_SIZE):
            data = data.ljust(BLOCK_SIZE, b"\0")
            if data.count(0) == BLOCK_SIZE:
                same &= index not in listed
            elif index not in listed:
                same = False
            else:
                stored = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockToken=listed[index])
                same &= stored["BlockData"].read() == data
            index += 1
    return same, len(listed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0, help="virtual size of the qcow2 (GiB)")
    parser.add_argument("--density", type=float, default=0.4, help="share of 1 MiB regions holding data")
    parser.add_argument("--chunk-mib", type=int, default=128, help="allocated MiB per convert invocation")
    parser.add_argument("--workdir", type=Path, help="where to build the image (default: a temporary directory)")
    parser.add_argument("--no-verify", action="store_true", help="skip reading the snapshot back")
    options = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("qemu-img is needed to build the image", file=sys.stderr)
        return 2

    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="diskport-import-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        size = int(options.size_gib * GIB)
        print(f"building a {options.size_gib:g} GiB qcow2, {options.density:.0%} of 1 MiB regions filled ...")
        image, oracle, filled = build_image(workdir, size, options.density)
        with emulated_stack(options.chunk_mib * MIB) as (stack, lambdas):
            bucket = stack.physical_name("WatchedBucket")
            boto3.client("s3").upload_file(str(image), bucket, SOURCE_KEY)
            counts = CallCounts(Counter(), threading.Lock())
            count_calls(counts, SOURCE_KEY)
            serve_source_ranges_from(image, bucket, SOURCE_KEY)
            job_id, wall_seconds = run_import(stack, lambdas)
            job = boto3.resource("dynamodb").Table(stack.physical_name("JobsTable")).get_item(Key={"job_id": job_id})
            item = job["Item"]
            if item["status"] != "SUCCESS":
                print(f"import ended {item['status']}: {item.get('error_code')} {item.get('fail_reason')}")
                return 1
            image_item = (
                boto3.resource("dynamodb")
                .Table(stack.physical_name("ImagesTable"))
                .get_item(Key={"id": item["image_id"]})["Item"]
            )
            puts = counts.calls["EBS PutSnapshotBlock"]
            from diskport.engine import BLOCK_SIZE
            from diskport.settings import get_settings

            skipped = size - puts * BLOCK_SIZE
            data_mib, file_mib, virtual_mib = filled / MIB, image.stat().st_size / MIB, size / MIB
            print(f"file: {file_mib:.0f} MiB, data: {data_mib:.0f} MiB, virtual disk: {virtual_mib:.0f} MiB")
            print(f"wall time (POST to SUCCESS): {wall_seconds:.1f} s, {data_mib / wall_seconds:.1f} MiB/s of data")
            chunks = item.get("chunk_bytes_done") or {}
            print(f"convert invocations (chunks): {len(chunks)} of {options.chunk_mib} MiB at most")
            source_gets, work_gets = counts.calls["S3 GET source"], counts.calls["S3 GET work file"]
            print(f"S3 GETs of the source: {source_gets}, of work files: {work_gets}")
            print(f"EBS PutSnapshotBlock: {puts} ({puts * BLOCK_SIZE / MIB:.0f} MiB)")
            settings = get_settings()
            print(
                f"convert workers share {settings.snapshot_puts_per_second:.0f} puts/s per snapshot among those "
                f"running, {settings.writers_per_chunk} requests in flight each"
            )
            print(f"bytes skipped: {skipped} ({skipped / size:.0%} of the virtual disk)")
            if not options.no_verify:
                same, stored = verify(str(image_item["snapshot_id"]), oracle)
                print(f"snapshot equals qemu-img convert -O raw: {'yes' if same else 'NO'} ({stored} blocks stored)")
                if not same:
                    return 1
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
