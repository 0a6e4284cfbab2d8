"""Load: under concurrent creates and imports, every accepted request has exactly one job, every job ends, and no
image is lost or duplicated (each snapshot holds its own file's bytes).

Runs `bench/load_bench.py` (which starts local mode on loopback ports in a child process) and checks its census.
CI runs a small load; `--run-slow` runs the full one (`make load` prints its figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ReliabilityReport

LOAD_BENCH = Path(__file__).resolve().parents[2] / "bench" / "load_bench.py"


def run_load(creates: int, imports: int, timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(LOAD_BENCH), "--creates", str(creates), "--imports", str(imports)]
    finished = subprocess.run(
        [*command, "--timeout", str(timeout), "--json"], capture_output=True, text=True, timeout=timeout + 120
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result: dict[str, Any] = json.loads(finished.stdout)
    return result


def assert_promises_hold(result: dict[str, Any], creates: int, imports: int) -> None:
    burst, loaded = result["creates"]["census"], result["imports"]
    # Every request was answered: accepted, or refused by flow control (400 IMG.0194) and nothing else
    assert burst["requests"] == creates
    assert set(burst["refused"]) <= {"400 IMG.0194"}, burst["refused"]
    assert burst["accepted"] + sum(burst["refused"].values()) == creates
    # Every accepted request has exactly one job, and every job ended
    assert burst["distinct_jobs"] == burst["accepted"] == burst["jobs_found"]
    assert burst["not_ended"] == 0
    assert set(burst["ended"]) <= {"SUCCESS", "FAIL"}
    # The imports: all accepted (refused ones were sent again), all succeeded, each with exactly one image
    census = loaded["census"]
    assert census["accepted"] == census["distinct_jobs"] == imports
    assert census["ended"] == {"SUCCESS": imports}
    assert loaded["jobs_with_one_image"] == loaded["active_images"] == imports
    assert loaded["jobs_with_several_images"] == loaded["images_without_a_success_job"] == 0
    # And no snapshot holds another image's bytes, or lost any
    assert loaded["snapshots_exact"] == imports


def record(report: ReliabilityReport, variant: str, result: dict[str, Any]) -> None:
    report.add("load", variant=variant, **{key: value for key, value in result.items()})


def test_a_small_concurrent_load_keeps_every_promise(report: ReliabilityReport) -> None:
    result = run_load(creates=20, imports=4, timeout=300)
    assert_promises_hold(result, 20, 4)
    record(report, "ci", result)


@pytest.mark.slow
def test_200_concurrent_creates_and_50_concurrent_imports_keep_every_promise(report: ReliabilityReport) -> None:
    result = run_load(creates=200, imports=50, timeout=1200)
    assert_promises_hold(result, 200, 50)
    record(report, "full", result)
