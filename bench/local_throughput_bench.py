"""Local mode's convert speed: today's planner and pacing against the former ones, in `diskport serve`, in one run.

Starts `diskport serve` once per configuration, with its strict EBS answering each PutSnapshotBlock after
`--latency-ms` and accepting `--quota` of them a second per snapshot, uploads a dense qcow2 of `--size-gib`, imports
it through the IMS API and times:

- Convert: from Fetch's end to the end of the last chunk's convert task (a worker beside Fetch, or the Convert Map's),
  in the execution's history; the last chunk's worker finishes the import within it;
- job: the job's `begin_time` to its `end_time`, as the IMS API answers them.

The configurations (each `--repeat` times, alternating, so that both see the same load of the machine):

- "former": the planner and pacing before the quota was shared (`MIN_CHUNK_BYTES` = 8 GiB, so a disk of 8 GiB of
  data or less is one chunk, paced to 900 / 16 = 56.25 requests/s with 8 writers);
- "current": the service's defaults;
- "throttled" (once, unless `--no-throttled`): the defaults with the strict EBS accepting a tenth of `--quota`, unknown
  to the workers; the import must end SUCCESS with the snapshot holding exactly the image's bytes.

Prints each run, the median ratios former / current, and the machine's load average (CPU-bound timings on a busy
machine are noisy: compare ratios measured in the same run).

    python bench/local_throughput_bench.py [--size-gib 2] [--quota 1000] [--latency-ms 100] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from local_mode import FORMER_PLANNER_AND_PACING, LocalMode, dense_qcow2, load_average, local_mode


@dataclass(frozen=True)
class Run:
    name: str
    status: str
    convert_seconds: float
    job_seconds: float
    chunks: int
    exact: bool | None

    def line(self, size_gib: float) -> str:
        exact = "" if self.exact is None else f", snapshot equals the image: {'yes' if self.exact else 'NO'}"
        return (
            f"  {self.name:9s} {self.status}: Convert {self.convert_seconds:6.1f} s "
            f"({size_gib * 1024 / self.convert_seconds:5.0f} MiB/s), job {self.job_seconds:6.1f} s, "
            f"{self.chunks} chunks{exact}"
        )


# The convert tasks of the state machine: the workers beside Fetch and the Convert map's (an Inline Map's
# iterations are states of the execution itself).
CONVERT_TASKS = {"ConvertFirstChunk", "ConvertChunk"}


def convert_seconds(local: LocalMode) -> tuple[float, int]:
    """From Fetch's end to the last chunk converted, in the one execution of this local mode; and its chunks."""
    states = local.client("stepfunctions")
    (machine,) = states.list_state_machines()["stateMachines"]
    (execution,) = states.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    events = states.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    exits = [(event, event["stateExitedEventDetails"]) for event in events if event["type"].endswith("StateExited")]
    fetched = next(event["timestamp"] for event, state in exits if state["name"] == "Fetch")
    converted = [
        event["timestamp"]
        for event, state in exits
        if state["name"] in CONVERT_TASKS and json.loads(state.get("output") or "{}").get("blocks_written", 0) > 0
    ]
    return (max(converted) - fetched).total_seconds(), len(converted)


def job_seconds(job: dict[str, Any]) -> float:
    begin, end = (datetime.fromisoformat(str(job[name]).replace("Z", "+00:00")) for name in ("begin_time", "end_time"))
    return (end - begin).total_seconds()


def import_once(
    name: str, image: Path, size_gib: float, environment: dict[str, str], workdir: Path, verify: bool
) -> Run:
    with local_mode(workdir / f"serve-{name}.log", environment) as local:
        image_url = local.upload(image)
        job = local.wait(local.start_import(image_url))
        if job["status"] != "SUCCESS":
            return Run(name, f"{job['status']} ({job.get('fail_reason')})", float("nan"), float("nan"), 0, None)
        convert, chunks = convert_seconds(local)
        exact = local.holds_dense_image(local.snapshot_of(job), size_gib) if verify else None
        return Run(name, job["status"], convert, job_seconds(job), chunks, exact)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0, help="data in the dense qcow2 (GiB)")
    parser.add_argument("--quota", type=float, default=1000.0, help="PutSnapshotBlock/s the EBS accepts per snapshot")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="how long the EBS takes to answer a block")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration, alternating")
    parser.add_argument("--no-throttled", action="store_true", help="skip the throttled run and its byte check")
    parser.add_argument("--workdir", type=Path, help="keeps the image (reused) and the logs")
    options = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("qemu-img is needed to build the image", file=sys.stderr)
        return 2
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="diskport-local-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ebs = {
        "DISKPORT_EBS_PUT_LATENCY_MS": f"{options.latency_ms:g}",
        "DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT": f"{options.quota:g}",
        "DISKPORT_EBS_PUT_RATE_PER_ACCOUNT": f"{options.quota:g}",
    }
    try:
        image = dense_qcow2(options.size_gib, workdir)
        print(
            f"diskport serve, {options.size_gib:g} GiB dense qcow2, EBS {options.quota:g} PutSnapshotBlock/s per "
            f"snapshot, {options.latency_ms:g} ms each; load average before: {load_average()}"
        )
        runs: dict[str, list[Run]] = {"former": [], "current": []}
        for _ in range(options.repeat):
            for name, settings in (("former", FORMER_PLANNER_AND_PACING), ("current", {})):
                run = import_once(f"{name}", image, options.size_gib, {**ebs, **settings}, workdir, verify=False)
                print(run.line(options.size_gib), flush=True)
                if run.status != "SUCCESS":
                    return 1
                runs[name].append(run)
        if not options.no_throttled:
            tenth = {**ebs, "DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT": f"{options.quota / 10:g}"}
            run = import_once("throttled", image, options.size_gib, tenth, workdir, verify=True)
            print(run.line(options.size_gib), flush=True)
            if run.status != "SUCCESS" or not run.exact:
                return 1
        former, current = runs["former"], runs["current"]
        convert_ratio = statistics.median(
            f.convert_seconds / c.convert_seconds for f, c in zip(former, current, strict=True)
        )
        job_ratio = statistics.median(f.job_seconds / c.job_seconds for f, c in zip(former, current, strict=True))
        print(f"load average after: {load_average()} ({os.cpu_count()} cores)")
        size = f"{options.size_gib:g} GiB dense"
        print(f"local Convert speed-up, current / former planner and pacing, {size}: {convert_ratio:.1f}x")
        print(f"local job begin-to-end speed-up, current / former planner and pacing, {size}: {job_ratio:.1f}x")
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
