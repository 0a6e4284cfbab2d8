"""`make run`, Ctrl-C, `make run` again at once: local mode starts again on the same ports, although the
connections of the first run still linger in TIME_WAIT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3

from .conftest import PROJECT_ID, _endpoints_once_serving


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(environment: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", "serve"], env=environment, stdout=output, stderr=output
        )
    api_url, aws_url = _endpoints_once_serving(process, log)
    return process, api_url, aws_url


def busy_session(api_url: str, aws_url: str) -> None:
    """A few calls to both servers, whose connections the servers close: they stay in TIME_WAIT after the stop."""
    for _ in range(3):
        with urllib.request.urlopen(f"{api_url}/v2/cloudimages", timeout=30) as answer:
            assert json.loads(answer.read()) == {"images": []}
    s3 = boto3.client(
        "s3",
        endpoint_url=aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert s3.list_buckets()["Buckets"]


def stop_with_ctrl_c(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0


def test_local_mode_starts_again_on_the_same_ports_right_after_a_busy_session_stopped(tmp_path: Path) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    environment.update(
        LOCAL_API_PORT=str(free_port()),
        LOCAL_AWS_PORT=str(free_port()),
        LOCAL_PROJECT_ID=PROJECT_ID,
    )
    # Given a local mode that served requests on both its ports, stopped with Ctrl-C
    first, api_url, aws_url = start(environment, tmp_path / "first.log")
    try:
        busy_session(api_url, aws_url)
    finally:
        stop_with_ctrl_c(first)

    # When it is started again at once on the same ports
    second, again_api_url, again_aws_url = start(environment, tmp_path / "second.log")
    try:
        # Then it serves there
        assert (again_api_url, again_aws_url) == (api_url, aws_url)
        busy_session(again_api_url, again_aws_url)
    finally:
        stop_with_ctrl_c(second)
