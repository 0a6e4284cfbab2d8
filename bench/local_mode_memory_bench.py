"""Peak memory of local mode, all its processes together, while it imports a dense qcow2.

Starts `diskport serve` on free ports, uploads a qcow2 of `--size-gib` GiB whose every block holds data to a
bucket of the emulator, imports it through the IMS API and samples, every 0.2 s, the memory of the serve
process and every process below it (the AWS emulator and the function instances): the sum of their RSS
(shared pages counted once per process, so an overestimate) and of their PSS (shared pages split between
them), from the POST that starts the import to its end. Prints both peaks next to the disk's size, the
heaviest processes, the upload's own peak, the import's wall time, and whether the snapshot holds a block
for every block of the disk.

    python bench/local_mode_memory_bench.py [--size-gib 4] [--workdir DIR] [--reuse-image]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

MIB = 1024 * 1024
GIB = 1024 * MIB
BLOCK = 512 * 1024
PROJECT_ID = "0123456789abcdef0123456789abcdef"


def dense_qcow2(size_gib: int, workdir: Path) -> Path:
    """A qcow2 whose every 512 KiB block holds data (each its own: the block's index leads it)."""
    raw, image = workdir / "dense.raw", workdir / "dense.qcow2"
    filler = os.urandom(BLOCK)
    with raw.open("wb") as file:
        for index in range(size_gib * GIB // BLOCK):
            file.write(index.to_bytes(8, "little") + filler[8:])
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    return image


def descendants(root: int) -> list[int]:
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


def memory_of(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes."""
    rss = pss = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for name, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.MULTILINE):
            if name == "Rss":
                rss += int(value) * 1024
            else:
                pss += int(value) * 1024
    return rss, pss


def process_name(pid: int) -> str:
    """`serve`, or the function an instance process runs (from its environment)."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    for entry in environment:
        if entry.startswith(b"AWS_LAMBDA_FUNCTION_NAME="):
            return f"{entry.partition(b'=')[2].decode()} instance {pid}"
    return f"serve {pid}" if pid else "?"


class PeakSampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_rss = self.peak_pss = self.most_processes = 0
        self.peak_by_process: dict[str, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            pids = descendants(self.root)
            rss, pss = memory_of(pids)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.most_processes = max(self.most_processes, len(pids))
            for pid in pids:
                single, _ = memory_of([pid])
                name = process_name(pid)
                self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), single)

    def restart(self) -> None:
        """Forget the peaks so far (the upload's), to measure the import alone."""
        self.peak_rss = self.peak_pss = 0
        self.peak_by_process = {}


def call(api_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        api_url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def serve(log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    environment.update(LOCAL_API_PORT="0", LOCAL_AWS_PORT="0", LOCAL_PROJECT_ID=PROJECT_ID)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", "serve"], env=environment, stdout=output, stderr=output
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        banner = log.read_text(errors="replace")
        api = re.search(r"IMS API\s+(http://127\.0\.0\.1:\d+)", banner)
        emulator = re.search(r"AWS emulator\s+(http://127\.0\.0\.1:\d+)", banner)
        if api and emulator:
            return process, api.group(1), emulator.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"diskport serve did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse-image", action="store_true", help="use the workdir's dense.qcow2 from a run before")
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="diskport-memory-bench-"))
    image = workdir / "dense.qcow2"
    if not (arguments.reuse_image and image.is_file()):
        image = dense_qcow2(arguments.size_gib, workdir)
    process, api_url, aws_url = serve(workdir / "serve.log")
    sampler = PeakSampler(process.pid)
    sampler.start()
    try:
        clients = {"endpoint_url": aws_url, "region_name": "us-east-1"}
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        patient = Config(read_timeout=1800, retries={"max_attempts": 1})
        s3 = boto3.client("s3", **clients, **credentials, config=patient)  # type: ignore[call-overload]
        s3.create_bucket(Bucket="bench")
        s3.upload_file(str(image), "bench", "dense.qcow2")
        upload_peak_rss = sampler.peak_rss
        time.sleep(2)
        resident_before_import, _ = memory_of(descendants(process.pid))
        sampler.restart()
        started = time.monotonic()
        request = {"name": "dense", "image_url": "bench:dense.qcow2", "min_disk": 40}
        job_id = call(api_url, "POST", "/v1/cloudimages/dataimages/action", request)["job_id"]
        while (job := call(api_url, "GET", f"/v1/{PROJECT_ID}/jobs/{job_id}"))["status"] not in ("SUCCESS", "FAIL"):
            time.sleep(1)
        wall = time.monotonic() - started
        blocks = 0
        if job["status"] == "SUCCESS":
            ebs = boto3.client("ebs", **clients, **credentials)  # type: ignore[call-overload]
            image_id = job["entities"]["image_id"]
            listed = call(api_url, "GET", f"/v2/cloudimages?id={image_id}")["images"][0]
            page: dict[str, Any] = {"NextToken": None}
            while "NextToken" in page:
                token = {"NextToken": page["NextToken"]} if page["NextToken"] else {}
                page = ebs.list_snapshot_blocks(SnapshotId=listed["diskport_snapshot_id"], MaxResults=10_000, **token)
                blocks += len(page["Blocks"])
    finally:
        sampler.stopping.set()
        sampler.join()
        process.terminate()
        process.wait(timeout=60)
    disk_blocks = arguments.size_gib * GIB // BLOCK
    print(f"disk              {arguments.size_gib} GiB dense qcow2 ({image.stat().st_size / GIB:.2f} GiB file)")
    print(f"job               {job['status']} in {wall:.0f} s ({arguments.size_gib * 1024 / wall:.0f} MiB/s)")
    print(f"snapshot blocks   {blocks} of {disk_blocks}")
    print(f"processes         at most {sampler.most_processes} (serve, emulator threads inside it, function instances)")
    print(
        f"peak memory RSS   {sampler.peak_rss / MIB:.0f} MiB summed over processes "
        f"({sampler.peak_rss / (arguments.size_gib * GIB):.2f} of the disk's size)"
    )
    print(f"peak memory PSS   {sampler.peak_pss / MIB:.0f} MiB summed over processes")
    print(f"upload peak RSS   {upload_peak_rss / MIB:.0f} MiB (the multipart upload to the emulator, before importing)")
    print(f"RSS at import     {resident_before_import / MIB:.0f} MiB, all processes, once the upload is done")
    for name, peak in sorted(sampler.peak_by_process.items(), key=lambda item: -item[1])[:6]:
        print(f"  {name:60} {peak / MIB:6.0f} MiB RSS at its peak")
    print(
        f"local mode peak memory, {arguments.size_gib} GiB dense import, all processes: "
        f"{sampler.peak_pss / MIB:.0f} MiB PSS ({sampler.peak_rss / MIB:.0f} MiB RSS summed)"
    )


if __name__ == "__main__":
    main()
