"""Load on local mode: a burst of concurrent create requests, then concurrent imports of small images.

    .venv/bin/python bench/load_bench.py                      # 200 concurrent creates, 50 concurrent imports
    .venv/bin/python bench/load_bench.py --creates 40 --imports 8 --json

Starts local mode (`diskport serve`'s LocalMode, on free loopback ports, in a child process), then:

1. Burst: `--creates` POST /v1/cloudimages/dataimages/action sent at once, each naming a file that does not
   exist, so each accepted job runs the pipeline and ends FAIL (IMG.0121) quickly. Prints the throughput and
   the p50 / p95 / p99 latency of the create call, and the census: every accepted request has exactly one job,
   every job ends SUCCESS or FAIL.
2. Imports: `--imports` small images (qcow2, vmdk, vhd, vhdx, vdi, raw in turn, each with its own bytes)
   created at once; a request refused by flow control (IMG.0194) is sent again after a pause, as a client
   would. Prints the census: each SUCCESS job has exactly one active image, no image is lost or duplicated,
   and each snapshot read back with the EBS direct API equals `qemu-img convert -O raw` of its file.

Every request goes to 127.0.0.1; every loop is bounded in count and in time (`--timeout`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diskport_local.export import nonzero_blocks, snapshot_contents

LOOPBACK = "127.0.0.1"
BLOCK_SIZE = 524_288
KIB = 1024
MIB = 1024 * KIB
CREATE_PATH = "/v1/cloudimages/dataimages/action"
UPLOADS_BUCKET = "diskport-uploads"
QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi", "raw": "raw"}
# No proxy may carry a request off this machine.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = f"{LOOPBACK},localhost"
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------- local mode


def serve(api_port: int, aws_port: int, max_active_jobs: int) -> int:
    """The child process: local mode with the template's parameters, MaxActiveJobs as asked."""
    from diskport_emulator import LocalStack
    from diskport_local.server import LocalMode, LocalModeOptions

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    local_mode = LocalMode(
        LocalModeOptions(api_port=api_port, aws_port=aws_port),
        LocalStack(parameters={"MaxActiveJobs": str(max_active_jobs)}),
    )
    local_mode.start()
    print(json.dumps({"api_url": local_mode.api_url, "aws_url": local_mode.aws_url}), flush=True)
    stopping.wait()
    local_mode.stop()
    return 0


class LocalModeProcess:
    """Local mode in a child process on free loopback ports."""

    def __init__(self, max_active_jobs: int, start_timeout: float = 120) -> None:
        # Port 0: local mode binds where the system chooses, and prints where.
        command = [sys.executable, __file__, "serve", "0", "0", str(max_active_jobs)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # local mode prints its URLs once it is ready
        if not line:
            raise RuntimeError("local mode did not start")
        urls = json.loads(line)
        self.api_url, self.aws_url = str(urls["api_url"]), str(urls["aws_url"])
        # The functions log to stdout: a pipe nobody reads fills up and blocks them, so keep reading it.
        self.log: list[str] = []
        threading.Thread(target=self._keep_log, name="local-mode-log", daemon=True).start()
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if call(self.api_url, "GET", "/openapi.json")[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError("local mode did not answer")

    def _keep_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            del self.log[:-200]  # the last lines are enough to tell what went wrong

    def aws_client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def call(api_url: str, method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    """One request to the local API: (status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        api_url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with LOCAL_HTTP.open(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, {"error": {"code": "connection", "message": str(error)}}


# ---------------------------------------------------------------------------------------------- the images


@dataclass(frozen=True)
class SmallImage:
    key: str
    path: Path
    oracle: Path


def small_images(count: int, folder: Path) -> list[SmallImage]:
    """`count` images of 1.5 MiB virtual disks, each with its own bytes, in the formats in turn."""
    formats = list(QEMU_FORMATS)
    images = []
    for number in range(count):
        disk = folder / f"disk-{number}.raw"
        with disk.open("wb") as file:
            file.truncate(3 * BLOCK_SIZE)
            for block in range(3):
                file.seek(block * BLOCK_SIZE + 100 * number)
                file.write(f"image {number} block {block} ".encode() * 50)
        disk_format = formats[number % len(formats)]
        path = folder / f"image-{number}.{disk_format}"
        qemu_format = QEMU_FORMATS[disk_format]
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", qemu_format, disk, path], check=True)
        oracle = folder / f"image-{number}.oracle.raw"
        subprocess.run(["qemu-img", "convert", "-f", qemu_format, "-O", "raw", path, oracle], check=True)
        images.append(SmallImage(f"load/{path.name}", path, oracle))
    return images


# ---------------------------------------------------------------------------------------------- the load


@dataclass
class CreateCall:
    seconds: float
    status: int
    job_id: str | None
    error_code: str | None


@dataclass
class Census:
    requests: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    distinct_jobs: int = 0
    jobs_found: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    not_ended: int = 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def latency_figures(calls: list[CreateCall], wall_seconds: float) -> dict[str, float]:
    seconds = [created.seconds for created in calls]
    return {
        "wall_seconds": round(wall_seconds, 3),
        "requests_per_second": round(len(calls) / wall_seconds, 1),
        "p50_ms": round(1000 * percentile(seconds, 0.50), 1),
        "p95_ms": round(1000 * percentile(seconds, 0.95), 1),
        "p99_ms": round(1000 * percentile(seconds, 0.99), 1),
        "max_ms": round(1000 * max(seconds), 1),
        "mean_ms": round(1000 * statistics.fmean(seconds), 1),
    }


def create_once(api_url: str, body: dict[str, Any], start: threading.Barrier | None = None) -> CreateCall:
    if start is not None:
        start.wait(timeout=60)
    began = time.perf_counter()
    status, answer = call(api_url, "POST", CREATE_PATH, body)
    seconds = time.perf_counter() - began
    job_id = answer.get("job_id") if status == 200 and isinstance(answer, dict) else None
    code = (answer.get("error") or {}).get("code") if status != 200 and isinstance(answer, dict) else None
    return CreateCall(seconds, status, job_id, code)


def burst(api_url: str, count: int) -> tuple[list[CreateCall], float]:
    """`count` creates released together, each from its own thread."""
    start = threading.Barrier(count + 1)
    with ThreadPoolExecutor(count) as pool:
        futures = [
            pool.submit(
                create_once,
                api_url,
                {"name": f"burst-{number}", "image_url": f"{UPLOADS_BUCKET}:load/missing-{number}.raw", "min_disk": 40},
                start,
            )
            for number in range(count)
        ]
        start.wait(timeout=60)
        began = time.perf_counter()
        calls = [future.result() for future in futures]
    return calls, time.perf_counter() - began


def create_until_accepted(api_url: str, body: dict[str, Any], deadline: float) -> list[CreateCall]:
    """Send the create again while flow control refuses it (IMG.0194), as a client would; bounded by the deadline."""
    attempts = []
    while True:
        created = create_once(api_url, body)
        attempts.append(created)
        if created.error_code != "IMG.0194" or time.monotonic() > deadline:
            return attempts
        time.sleep(1.0)


def wait_for_jobs(api_url: str, job_ids: list[str], deadline: float) -> dict[str, dict[str, Any]]:
    """Each job as the API answers it once it has ended (or when the deadline passes)."""
    final: dict[str, dict[str, Any]] = {}
    pending = list(job_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            status, job = call(api_url, "GET", f"/v1/cloudimages/job/{job_id}")
            if status == 200 and job["status"] in ("SUCCESS", "FAIL"):
                final[job_id] = job
            else:
                still.append(job_id)
                final[job_id] = job if status == 200 else {"status": f"HTTP {status}"}
        pending = still
        if pending:
            time.sleep(0.5)
    return final


def census_of(calls: list[CreateCall], jobs: dict[str, dict[str, Any]]) -> Census:
    accepted = [created.job_id for created in calls if created.status == 200 and created.job_id]
    found = [job for job in jobs.values() if job.get("job_id")]
    return Census(
        requests=len(calls),
        accepted=len(accepted),
        refused=dict(Counter(f"{created.status} {created.error_code}" for created in calls if created.status != 200)),
        distinct_jobs=len(set(accepted)),
        jobs_found=len(found),
        ended=dict(Counter(job["status"] for job in jobs.values())),
        error_codes=dict(Counter(job.get("error_code") for job in jobs.values() if job.get("error_code"))),
        not_ended=sum(1 for job in jobs.values() if job.get("status") not in ("SUCCESS", "FAIL")),
    )


def run(creates: int, imports: int, max_active_jobs: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="diskport-load-") as folder:
        images = small_images(imports, Path(folder))
        local = LocalModeProcess(max_active_jobs)
        try:
            s3, ebs = local.aws_client("s3"), local.aws_client("ebs")
            for image in images:
                s3.put_object(Bucket=UPLOADS_BUCKET, Key=image.key, Body=image.path.read_bytes())

            # 1. The burst of creates
            calls, burst_seconds = burst(local.api_url, creates)
            accepted = [created.job_id for created in calls if created.job_id]
            burst_jobs = wait_for_jobs(local.api_url, accepted, deadline)
            burst_census = census_of(calls, burst_jobs)

            # 2. Concurrent imports of small images
            began = time.perf_counter()
            with ThreadPoolExecutor(max(1, imports)) as pool:
                attempts = list(
                    pool.map(
                        lambda numbered: create_until_accepted(
                            local.api_url,
                            {
                                "name": f"load-{numbered[0]}",
                                "image_url": f"{UPLOADS_BUCKET}:{numbered[1].key}",
                                "min_disk": 40,
                            },
                            deadline,
                        ),
                        enumerate(images),
                    )
                )
            final_calls = [tries[-1] for tries in attempts]
            job_by_image = {number: tries[-1].job_id for number, tries in enumerate(attempts)}
            import_jobs = wait_for_jobs(local.api_url, [job_id for job_id in job_by_image.values() if job_id], deadline)
            import_seconds = time.perf_counter() - began
            import_census = census_of(final_calls, import_jobs)

            # No image lost or duplicated: one active image per SUCCESS job, and its bytes are the file's
            status, listed = call(local.api_url, "GET", "/v2/cloudimages?limit=1000")
            assert status == 200, listed
            load_images = [image for image in listed["images"] if str(image["name"]).startswith("load-")]
            active = [image for image in load_images if image["status"] == "active"]
            succeeded = {job_id: job for job_id, job in import_jobs.items() if job.get("status") == "SUCCESS"}
            images_per_job = Counter(image["diskport_job_id"] for image in active)
            exact = 0
            for number, job_id in job_by_image.items():
                job = succeeded.get(job_id or "")
                if job is None:
                    continue
                (image,) = [image for image in active if image["id"] == job["entities"]["image_id"]] or [None]
                if image is not None and snapshot_contents(image["diskport_snapshot_id"], ebs=ebs) == nonzero_blocks(
                    images[number].oracle
                ):
                    exact += 1
            imported_bytes = sum(image.path.stat().st_size for image in images)
        finally:
            local.stop()
    return {
        "creates": {**latency_figures(calls, burst_seconds), "census": asdict(burst_census)},
        "imports": {
            "images": imports,
            "wall_seconds": round(import_seconds, 2),
            "images_per_minute": round(60 * imports / import_seconds, 1) if imports else 0.0,
            "file_mib_per_second": round(imported_bytes / MIB / import_seconds, 2) if imports else 0.0,
            "create_attempts": sum(len(tries) for tries in attempts),
            "census": asdict(import_census),
            "active_images": len(active),
            "jobs_with_one_image": sum(1 for job_id in succeeded if images_per_job.get(job_id) == 1),
            "jobs_with_several_images": sum(1 for count in images_per_job.values() if count > 1),
            "images_without_a_success_job": sum(1 for image in active if image["diskport_job_id"] not in succeeded),
            "snapshots_exact": exact,
        },
        "settings": {"creates": creates, "imports": imports, "max_active_jobs": max_active_jobs},
    }


def print_report(result: dict[str, Any]) -> None:
    creates, imports = result["creates"], result["imports"]
    burst_census, import_census = creates["census"], imports["census"]
    print(f"local mode, {result['settings']}")
    print(
        f"create burst: {burst_census['requests']} concurrent requests in {creates['wall_seconds']} s "
        f"= {creates['requests_per_second']} requests/s"
    )
    print(
        f"  create latency: p50 {creates['p50_ms']} ms, p95 {creates['p95_ms']} ms, p99 {creates['p99_ms']} ms, "
        f"max {creates['max_ms']} ms"
    )
    print(
        f"  accepted {burst_census['accepted']} ({burst_census['distinct_jobs']} distinct jobs, "
        f"{burst_census['jobs_found']} found), refused {burst_census['refused']}, ended {burst_census['ended']} "
        f"{burst_census['error_codes']}, not ended {burst_census['not_ended']}"
    )
    print(
        f"imports: {imports['images']} small images in {imports['wall_seconds']} s = {imports['images_per_minute']} "
        f"images/min ({imports['file_mib_per_second']} MiB/s of files), {imports['create_attempts']} create calls"
    )
    print(
        f"  accepted {import_census['accepted']}, ended {import_census['ended']} {import_census['error_codes']}, "
        f"not ended {import_census['not_ended']}"
    )
    print(
        f"  active images {imports['active_images']}: jobs with exactly one image {imports['jobs_with_one_image']}, "
        f"with several {imports['jobs_with_several_images']}, images without a SUCCESS job "
        f"{imports['images_without_a_success_job']}, snapshots byte-exact {imports['snapshots_exact']}"
    )


def main(arguments: list[str]) -> int:
    if arguments[:1] == ["serve"]:
        return serve(int(arguments[1]), int(arguments[2]), int(arguments[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=200, help="concurrent create requests in the burst")
    parser.add_argument("--imports", type=int, default=50, help="concurrent imports of small images")
    parser.add_argument("--max-active-jobs", type=int, default=40, help="the MaxActiveJobs parameter (template: 40)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the whole run may take")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(arguments)
    result = run(options.creates, options.imports, options.max_active_jobs, options.timeout)
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
