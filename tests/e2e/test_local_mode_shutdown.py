"""Stopping local mode during an import: it says what it waits for, and a second signal stops it at once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

from .conftest import STARTUP_SECONDS

MIB = 1024 * 1024


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes], seconds: float) -> re.Match[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert process.poll() is None or re.search(pattern, log.read_text(errors="replace")), log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"never saw {pattern!r} in:\n{log.read_text()}")


def test_a_second_signal_stops_local_mode_at_once_and_fails_the_import(tmp_path: Path) -> None:
    # Given local mode running, and an import of a 768 MiB disk of data under way
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    environment.update(LOCAL_API_PORT="0", LOCAL_AWS_PORT="0", AWS_ACCESS_KEY_ID="testing")
    environment.update(AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", "serve"], env=environment, stdout=output, stderr=output
        )
    try:
        api = _wait_for(log, r"IMS API\s+(http://127\.0\.0\.1:\d+)", process, STARTUP_SECONDS).group(1)
        aws = _wait_for(log, r"AWS emulator\s+(http://127\.0\.0\.1:\d+)", process, 5).group(1)
        disk = tmp_path / "data.raw"
        with disk.open("wb") as file:
            for _ in range(768):
                file.write(os.urandom(1024) * 1024)
        s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
        s3.upload_file(str(disk), "diskport-uploads", "big/data.raw")
        request = {"name": "big", "image_url": "diskport-uploads:big/data.raw", "min_disk": 40}
        created = urllib.request.Request(
            f"{api}/v1/cloudimages/dataimages/action",
            data=json.dumps(request).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(created, timeout=30) as answer:
            job_id = json.loads(answer.read())["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{api}/v1/cloudimages/job/{job_id}", timeout=30) as answer:
                if json.loads(answer.read())["entities"].get("current_task") == "convert":
                    break
            time.sleep(0.2)

        # When Ctrl-C is pressed, then local mode says what it waits for, naming the job
        process.send_signal(signal.SIGINT)
        _wait_for(log, rf"waiting for 1 import\(s\) under way to end \(job {job_id}\)", process, 30)
        # And when SIGTERM follows, it stops at once, the import stopped and its job failed
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 1
        assert time.monotonic() - stopped_at < 25
        assert "1 import(s) stopped, 1 of their jobs failed" in log.read_text(), log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
