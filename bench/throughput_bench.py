"""Today's planner and pacing against the shared-quota ones, measured in the same run, under an EBS quota and latency.

Imports one dense qcow2 (`--size-gib`, default 2) through the emulated stack three times:

- "static": the planner and pacing this service had before the quota was shared: chunks of up to 8 GiB
  (`MIN_CHUNK_BYTES` = `ChunkBytes`, so a disk of 8 GiB of data or less is one chunk) and each worker paced to
  900 / 16 = 56 requests/s with 8 writers;
- "shared": the service's defaults: chunks for up to `ConvertConcurrency` workers, each taking its share of
  the snapshot quota among the workers that run;
- "throttled": the defaults, with EBS accepting only a tenth of `--quota`, unknown to the workers: only its
  throttling answers slow them down; the import must still end SUCCESS with exactly the file's bytes.

EBS here answers each PutSnapshotBlock after `--latency` seconds and refuses, with the ThrottlingException
EBS sends, any request beyond `--quota` in a one-second window (per snapshot). These are added at the client
(where the integration tests inject faults); when local mode's own EBS enforces quotas, the same comparison
runs there with `--no-client-quota`. The local runtime may run a Map's chunks one after another; then the
shared-quota workers do not run in parallel here, and the figure is a lower bound of what they gain.

    python bench/throughput_bench.py [--size-gib 2] [--quota 1000] [--latency 0.1] [--no-verify]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
from import_bench import GIB, SOURCE_KEY, build_image, emulated_stack, run_import, serve_source_ranges_from, verify
from local_mode import FORMER_PLANNER_AND_PACING


class QuotaAndLatency:
    """EBS's PutSnapshotBlock as the quota and latency make it: slow answers, throttling beyond the quota."""

    def __init__(self, quota: float, latency: float) -> None:
        self.quota, self.latency = quota, latency
        self._accepted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.most_in_one_second = 0

    def install(self) -> None:
        from diskport.stores import aws

        aws.client("ebs").meta.events.register("before-call.ebs.PutSnapshotBlock", self._on_put)

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()
            self.requests = self.throttled = self.most_in_one_second = 0

    def _on_put(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        time.sleep(self.latency)
        snapshot = str(params["url_path"]).split("/")[2]
        now = time.monotonic()
        with self._lock:
            self.requests += 1
            window = self._accepted.setdefault(snapshot, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.quota:
                self.throttled += 1
                response = {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                }
                return SimpleNamespace(status_code=400, headers={}, content=b""), response
            window.append(now)
            self.most_in_one_second = max(self.most_in_one_second, len(window))
        return None


def import_with(settings: dict[str, str], stack: Any, lambdas: Any) -> tuple[str, float, dict[str, Any]]:
    from diskport.settings import get_settings

    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    get_settings.cache_clear()
    try:
        job_id, seconds = run_import(stack, lambdas)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
    item = boto3.resource("dynamodb").Table(stack.physical_name("JobsTable")).get_item(Key={"job_id": job_id})["Item"]
    return job_id, seconds, item


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0, help="data in the dense qcow2 (GiB)")
    parser.add_argument("--quota", type=float, default=1000.0, help="PutSnapshotBlock/s EBS accepts per snapshot")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds EBS takes to answer a PutSnapshotBlock")
    parser.add_argument("--no-client-quota", action="store_true", help="leave quota and latency to local mode's EBS")
    parser.add_argument("--no-verify", action="store_true", help="skip reading the throttled run's snapshot back")
    parser.add_argument("--workdir", type=Path)
    options = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("qemu-img is needed to build the image", file=sys.stderr)
        return 2
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="diskport-throughput-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        size = int(options.size_gib * GIB)
        print(f"building a dense {options.size_gib:g} GiB qcow2 ...")
        image, oracle, _ = build_image(workdir, size, 1.0)
        with emulated_stack(8 * GIB) as (stack, lambdas):
            bucket = stack.physical_name("WatchedBucket")
            boto3.client("s3").upload_file(str(image), bucket, SOURCE_KEY)
            serve_source_ranges_from(image, bucket, SOURCE_KEY)
            ebs = QuotaAndLatency(options.quota, options.latency)
            if not options.no_client_quota:
                ebs.install()
            from diskport.settings import get_settings

            default_budget = get_settings().snapshot_puts_per_second
            runs: dict[str, tuple[dict[str, str], float]] = {
                "static": (FORMER_PLANNER_AND_PACING, options.quota),
                "shared": ({}, options.quota),
                "throttled": ({}, options.quota / 10),
            }
            seconds: dict[str, float] = {}
            print(
                f"EBS: {options.quota:.0f} PutSnapshotBlock/s per snapshot, {options.latency * 1000:.0f} ms each; "
                f"the service plans {default_budget:.0f}/s"
            )
            for name, (settings, quota) in runs.items():
                ebs.reset()
                ebs.quota = quota
                _, seconds[name], item = import_with(settings, stack, lambdas)
                chunks = len(item.get("chunk_bytes_done") or {})
                print(
                    f"  {name:9s}: {item['status']} in {seconds[name]:6.1f} s, {chunks} chunks, "
                    f"{size / 2**20 / seconds[name]:6.1f} MiB/s, {ebs.requests} requests, throttled {ebs.throttled}, "
                    f"most accepted in one second {ebs.most_in_one_second} (quota {quota:.0f})"
                )
                if item["status"] != "SUCCESS":
                    print(f"  {name} ended {item['status']}: {item.get('error_code')} {item.get('fail_reason')}")
                    return 1
                if name == "throttled" and not options.no_verify:
                    image_item = (
                        boto3.resource("dynamodb")
                        .Table(stack.physical_name("ImagesTable"))
                        .get_item(Key={"id": item["image_id"]})["Item"]
                    )
                    same, _ = verify(str(image_item["snapshot_id"]), oracle)
                    print(f"  throttled run's snapshot equals qemu-img convert -O raw: {'yes' if same else 'NO'}")
                    if not same:
                        return 1
            print(
                f"local convert speed-up, shared quota / static pacing, {options.size_gib:g} GiB dense: "
                f"{seconds['static'] / seconds['shared']:.1f}x"
            )
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
