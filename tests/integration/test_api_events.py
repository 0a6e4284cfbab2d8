"""The `events/api_*.json` payloads (also used by `sam local invoke`) give the answers they are named for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"
KNOWN_JOB = "4010a32b5f909853015f90aaa24b0015"  # the job the show_job events ask about
KNOWN_IMAGE = "aa5306f7-0000-4000-8000-000000000001"  # the image the image events change, tag and delete

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
    "api_create_data_image_safe_mode.json": (200, None),
    "api_list_images_undocumented_filter.json": (400, "IMG.0001"),
    "api_update_image.json": (200, None),
    "api_show_image_tags.json": (200, None),
    "api_batch_tag_action.json": (204, None),
    "api_delete_image.json": (204, None),
    "api_delete_image_unknown.json": (404, "IMG.0404"),
    "api_show_image_quota.json": (200, None),
    "api_list_jobs.json": (200, None),
}


def test_every_api_event_is_covered() -> None:
    assert sorted(path.name for path in EVENTS.glob("api_*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_api_event_reaches_its_function_and_gets_its_answer(stack: Any, name: str) -> None:
    from diskport.stores.images import ImageRecord, ImageStore
    from diskport.stores.jobs import Job, JobStore

    # Given the job the show-job events ask about, and the active image the image events name, in the events' project
    event = json.loads((EVENTS / name).read_text())
    account = event["requestContext"]["authorizer"]["iam"]["accountId"]
    JobStore().create(Job(job_id=KNOWN_JOB, project_id=account, request={"name": "fedora-data1"}))
    image = ImageRecord.model_validate(
        {"id": KNOWN_IMAGE, "name": "fedora-data1", "min_disk": 40, "__data_origin": "file,b:k", "owner": account}
    )
    ImageStore().create_or_get(image, quota=50)
    ImageStore().update(KNOWN_IMAGE, status="active")
    (route,) = [route for route in stack.local.api_routes() if f"{route.method} {route.path}" == event["routeKey"]]

    # When
    result = stack.lambdas.handler(route.function)(event, stack.lambdas.context(route.function))

    # Then
    status, code = EXPECTED[name]
    body = json.loads(result["body"]) if result.get("body") else None
    assert result["statusCode"] == status, body
    if code is not None:
        assert body is not None and body["error"]["code"] == code
