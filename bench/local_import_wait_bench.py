"""`diskport import --wait` of a dense qcow2 in local mode, as a person runs it: today's planner and pacing against
the former ones, in one run.

Starts `diskport serve` on free ports once per configuration, runs the CLI against it (`LOCAL_API_PORT`,
`LOCAL_AWS_PORT`) with a dense qcow2 of `--size-gib` (a local file: the CLI checks and uploads it, then follows the
job), and polls `GET /v1/cloudimages/jobs` every 0.5 s beside it. Prints, for each configuration, the time from
the command to its end (the upload included), its exit status, and the distinct `process_percent` values the job
showed on the way; then the ratio former / current (and, for 1 GiB, the ratio to the 121 s recorded before the
shared quota and concurrent function instances, which no longer exist to measure).

- "former": the planner and pacing before the quota was shared (`MIN_CHUNK_BYTES` = 8 GiB: one chunk, paced to
  900 / 16 = 56.25 requests/s with 8 writers), as `bench/local_throughput_bench.py` has it;
- "current": the service's defaults.

    python bench/local_import_wait_bench.py [--size-gib 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from local_mode import FORMER_PLANNER_AND_PACING, LocalMode, dense_qcow2, load_average, local_mode

DISKPORT = Path(sys.executable).with_name("diskport")
# `diskport import --wait` of a 1 GiB dense qcow2 on this project's 2-core machine before the quota was shared and
# function instances ran concurrently (docs/throughput.md, Local mode).
RECORDED_BEFORE_SECONDS = 121.0


def progress_seen(local: LocalMode, stop: threading.Event, seen: list[float]) -> None:
    """The newest job's process_percent every 0.5 s, each value once, in the order it came."""
    while not stop.wait(0.5):
        try:
            jobs = local.call("GET", "/v1/cloudimages/jobs").get("jobs") or []
        except OSError:
            continue
        if jobs:
            percent = jobs[0].get("entities", {}).get("process_percent")
            if percent is not None and (not seen or seen[-1] != percent):
                seen.append(float(percent))


def import_and_wait(
    name: str, image: Path, environment: dict[str, str], workdir: Path
) -> tuple[float, int, list[float]]:
    """Seconds from the command to its end, its exit status, and the progress values seen."""
    with local_mode(workdir / f"serve-{name}.log", environment) as local:
        ports = {
            "LOCAL_API_PORT": local.api_url.rsplit(":", 1)[1],
            "LOCAL_AWS_PORT": local.aws_url.rsplit(":", 1)[1],
        }
        variables = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MOTO_"))}
        stop, seen = threading.Event(), list[float]()
        watcher = threading.Thread(target=progress_seen, args=(local, stop, seen), daemon=True)
        watcher.start()
        started = time.monotonic()
        command = [str(DISKPORT), "import", str(image), "--name", f"wait-{name}", "--min-disk", "40", "--wait"]
        finished = subprocess.run(command, env={**variables, **ports}, capture_output=True, check=False)
        seconds = time.monotonic() - started
        stop.set()
        watcher.join()
        return seconds, finished.returncode, seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0, help="data in the dense qcow2 (GiB)")
    parser.add_argument("--workdir", type=Path, help="keeps the image (reused) and the logs")
    options = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("qemu-img is needed to build the image", file=sys.stderr)
        return 2
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="diskport-import-wait-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        image = dense_qcow2(options.size_gib, workdir)
        print(f"diskport import --wait, {options.size_gib:g} GiB dense qcow2; load average before: {load_average()}")
        times: dict[str, float] = {}
        for name, settings in (("former", FORMER_PLANNER_AND_PACING), ("current", {})):
            seconds, status, seen = import_and_wait(name, image, settings, workdir)
            values = ", ".join(f"{value:g}" for value in seen)
            print(f"  {name:8s} exit {status} in {seconds:6.1f} s; progress took {len(set(seen))} values: {values}")
            if status != 0:
                return 1
            times[name] = seconds
        print(f"load average after: {load_average()} ({os.cpu_count()} cores)")
        print(
            f"local import --wait speed-up, current / former planner and pacing, {options.size_gib:g} GiB dense: "
            f"{times['former'] / times['current']:.1f}x ({times['current']:.1f} s)"
        )
        if options.size_gib == 1:
            # Not of this run: the former local mode (one invocation of a function at a time, moto's EBS in memory)
            # no longer exists to measure, so its recorded figure on this 2-core machine stands in.
            print(
                f"local import --wait of 1 GiB dense against the {RECORDED_BEFORE_SECONDS:.0f} s recorded before "
                f"the shared quota and concurrent function instances: {RECORDED_BEFORE_SECONDS / times['current']:.1f}x"
            )
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
