"""The CLI as a person sees it on a terminal (a pseudo-terminal): tables, the progress bar, and Ctrl-C."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import ApiFront, FrontServer

from .terminal import Terminal

FINISHING_JOB = "a" * 32
ENDLESS_JOB = "b" * 32
IMAGE = {
    "id": "5c3b4a1e-0d1f-4e5a-9b7c-2f6e8d9a0b1c",
    "name": "data-1",
    "status": "active",
    "diskport_source_format": "qcow2",
    "diskport_virtual_size_bytes": 6 * 1024**3,
    "min_disk": 40,
    "created_at": "2026-12-01T10:00:00Z",
    "__os_type": "Linux",
}


TAGS = [{"key": "team", "value": "storage"}, {"key": "环境", "value": "生产"}]


class ScriptedFunctions:
    """Answers like the IMS functions: one job that ends after a few polls, one that never does."""

    def __init__(self) -> None:
        self.polls = 0

    def invoke(self, function: str, event: dict[str, Any]) -> tuple[str, bool]:
        if function == "ListImagesFunction" and event["rawPath"].endswith("/tags"):
            body: Any = {"tags": TAGS}
        elif function == "ListImagesFunction":
            body = {"images": [IMAGE]}
        elif function == "ListJobsFunction":
            body = {"jobs": [self._job(FINISHING_JOB, "SUCCESS", 1, "done")], "next": None}
        elif event["rawPath"].endswith(FINISHING_JOB):
            self.polls += 1
            body = (
                self._job(FINISHING_JOB, "RUNNING", 0.3 * self.polls, "convert")
                if self.polls < 3
                else self._job(FINISHING_JOB, "SUCCESS", 1, "")
            )
        else:
            body = self._job(ENDLESS_JOB, "RUNNING", 0.5, "convert")
        return json.dumps({"statusCode": 200, "body": json.dumps(body)}), False

    @staticmethod
    def _job(job_id: str, status: str, fraction: float, task: str) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "job_type": "imsImportDataImageJob",
            "status": status,
            "begin_time": "2026-12-01T10:00:00.000Z",
            "end_time": None,
            "error_code": None,
            "fail_reason": None,
            "entities": {"image_name": "data-1", "process_percent": fraction, "current_task": task},
        }


@pytest.fixture
def api() -> Iterator[dict[str, str]]:
    """The environment that points the CLI's local mode at a scripted API."""
    server = FrontServer(ApiFront(LocalStack().api_routes(), ScriptedFunctions().invoke), "127.0.0.1", 0)
    server.start()
    yield {"LOCAL_API_PORT": server.url.rpartition(":")[2], "COLUMNS": "200"}
    server.stop()


def test_images_on_a_terminal_are_a_table(api: dict[str, str]) -> None:
    terminal = Terminal(["images"], api)
    assert terminal.finish() == 0
    lines = [line for line in terminal.screen.splitlines() if line.strip()]
    assert lines[0].split() == ["ID", "NAME", "STATUS", "FORMAT", "DISK", "MIN_DISK", "CREATED"]
    assert lines[1].split() == [IMAGE["id"], "data-1", "active", "qcow2", "6.0", "GiB", "40", "GB", IMAGE["created_at"]]


def test_json_on_a_terminal_when_asked(api: dict[str, str]) -> None:
    terminal = Terminal(["images", "--json"], api)
    assert terminal.finish() == 0
    assert json.loads(terminal.screen) == [IMAGE]


def test_image_tags_on_a_terminal_are_one_key_value_line_each(api: dict[str, str]) -> None:
    terminal = Terminal(["image", "tags", IMAGE["id"], "--project-id", "0123456789ab"], api)
    assert terminal.finish() == 0
    assert [line for line in terminal.screen.splitlines() if line.strip()] == ["team=storage", "环境=生产"]


def test_job_wait_draws_one_bar_to_the_end(api: dict[str, str]) -> None:
    # When a person follows a job that ends after a few polls
    terminal = Terminal(["job", FINISHING_JOB, "--wait", "--poll-seconds", "0.05"], api)
    # Then one line is redrawn (fraction 0.3 shown as 30%), with the time spent, and the ended job follows
    assert terminal.finish() == 0
    assert "\r[#########.....................]  30.0%  RUNNING convert  0s" in terminal.screen
    assert "100.0%  SUCCESS" in terminal.screen
    assert "status:     SUCCESS" in terminal.screen


def test_ctrl_c_while_following_says_how_to_follow_again(api: dict[str, str]) -> None:
    # Given a person following a job that goes on
    terminal = Terminal(["job", ENDLESS_JOB, "--wait", "--poll-seconds", "0.05"], api)
    terminal.wait_for(r"50\.0%  RUNNING convert")
    # When they press Ctrl-C
    terminal.interrupt()
    # Then the command ends at once, as interrupted, without a traceback, saying how to follow the job again
    assert terminal.finish() == 130, terminal.screen
    assert f"the import goes on. Follow it again with: diskport job {ENDLESS_JOB} --wait" in terminal.screen
    assert "Traceback" not in terminal.screen, terminal.screen


def test_jobs_on_a_terminal_are_a_table(api: dict[str, str]) -> None:
    terminal = Terminal(["jobs"], api)
    assert terminal.finish() == 0
    heading, row = [line.split() for line in terminal.screen.splitlines() if line.strip()][:2]
    assert heading == ["JOB_ID", "STATUS", "TASK", "PROGRESS", "IMAGE", "BEGAN", "ERROR"]
    assert row[:4] == [FINISHING_JOB, "SUCCESS", "done", "100.0%"]


@pytest.fixture
def s3_emulator() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield {"LOCAL_AWS_PORT": str(port), "LOCAL_API_PORT": "9", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    server.stop()


def test_ctrl_c_during_the_upload_removes_it_without_a_traceback(s3_emulator: dict[str, str], tmp_path: Path) -> None:
    # Given a large disk being uploaded
    disk = tmp_path / "big.raw"
    with disk.open("wb") as file:
        file.truncate(256 * 1024 * 1024)
    terminal = Terminal(["import", str(disk), "--name", "big", "--min-disk", "40"], s3_emulator)
    terminal.wait_for(r"uploading big\.raw")
    # When the person presses Ctrl-C during the upload
    terminal.interrupt()
    # Then the command ends as interrupted, with one sentence and no traceback
    assert terminal.finish() == 130, terminal.screen
    assert "interrupted; nothing was left in diskport-uploads" in terminal.screen
    assert "Traceback" not in terminal.screen, terminal.screen
    # And nothing of the upload is left: no object, no unfinished multipart upload
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_emulator["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert s3.list_objects_v2(Bucket="diskport-uploads").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket="diskport-uploads").get("Uploads", []) == []
