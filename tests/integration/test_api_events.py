"""The `events/api_*.json` payloads (also used by `sam local invoke`) give the answers they are named for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"
KNOWN_JOB = "4010a32b5f909853015f90aaa24b0015"  # the job the show_job events ask about

EXPECTED = {
    "api_create_data_image.json": (200, None),
    "api_create_data_image_image_tags.json": (200, None),
    "api_create_data_image_min_disk_too_small.json": (400, "IMG.0055"),
    "api_create_data_image_empty_body.json": (400, "IMG.0007"),
    "api_create_data_image_invalid_json.json": (400, "IMG.0001"),
    "api_create_data_image_space_in_file_name.json": (400, "IMG.0175"),
    "api_show_job.json": (200, None),
    "api_show_job_unknown.json": (404, "IMG.0404"),
    "api_show_job_progress.json": (200, None),
    "api_list_images.json": (200, None),
    "api_list_jobs.json": (200, None),
}


def test_every_api_event_is_covered() -> None:
    assert sorted(path.name for path in EVENTS.glob("api_*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_api_event_reaches_its_function_and_gets_its_answer(stack: Any, name: str) -> None:
    from diskport.jobs import Job, JobStore

    # Given the job the show-job events ask about, in the events' project
    event = json.loads((EVENTS / name).read_text())
    account = event["requestContext"]["authorizer"]["iam"]["accountId"]
    JobStore().create(Job(job_id=KNOWN_JOB, project_id=account, request={"name": "fedora-data1"}))
    (route,) = [route for route in stack.local.api_routes() if f"{route.method} {route.path}" == event["routeKey"]]

    # When
    result = stack.lambdas.handler(route.function)(event, stack.lambdas.context(route.function))

    # Then
    status, code = EXPECTED[name]
    body = json.loads(result["body"])
    assert result["statusCode"] == status, body
    if code is not None:
        assert body["error"]["code"] == code
