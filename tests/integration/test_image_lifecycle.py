"""The rest of a data image's life through the API (ims-api.md §6): update, tags, quota, delete.

Images are put in the Images table as an import leaves them (counted against the quota, with an EBS snapshot), so
each test reaches the lifecycle routes through their functions without running an import first.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from diskport.errors import ImageQuotaError
from diskport.settings import get_settings
from diskport.stores.images import IMAGES_COUNTED, ImageRecord, ImageStore

from tests.conftest import PROJECT_ID

OTHER_PROJECT_ID = "fedcba9876543210fedcba9876543210"


def stored_image(name: str = "fedora-data1", *, status: str = "active", quota: int = 50, **fields: Any) -> ImageRecord:
    """An image as an import leaves it: counted against the quota, its snapshot started (and, if active, done)."""
    snapshot_id = boto3.client("ebs").start_snapshot(VolumeSize=40, Tags=[{"Key": "diskport:image-id", "Value": name}])[
        "SnapshotId"
    ]
    images = ImageStore()
    image = ImageRecord.model_validate(
        {
            "name": name,
            "min_disk": 40,
            "__data_origin": f"file,images:{name}.qcow2",
            "owner": fields.pop("owner", PROJECT_ID),
            "tags": ["aaa.111"],
            **fields,
        }
    )
    images.create_or_get(image, quota=quota)
    if status == "killed":
        images.kill(image)
    else:
        images.update(image.id, status=status, snapshot_id=snapshot_id, virtual_size=1000)
    return image


def snapshot_of(image_id: str) -> str:
    return str(ImageStore().get(image_id, PROJECT_ID).snapshot_id)  # type: ignore[union-attr]


def snapshot_exists(snapshot_id: str) -> bool:
    snapshots = boto3.client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return snapshot_id in {snapshot["SnapshotId"] for snapshot in snapshots}


def listed(stack: Any, **query: str) -> list[dict[str, Any]]:
    answer = stack.call_api("GET", "/v2/cloudimages", query=query or None)
    assert answer.status == 200, answer.body
    return list(answer.body["images"])


# ---------------------------------------------------------------------------------------------- update
def test_a_patch_renames_and_redescribes_an_active_image_and_answers_the_whole_record(stack: Any) -> None:
    image = stored_image()
    patch = [
        {"op": "replace", "path": "/name", "value": "fedora-data2"},
        {"op": "replace", "path": "/__description", "value": "Data disk 2 of Fedora"},
    ]

    answer = stack.call_api("PATCH", f"/v2/cloudimages/{image.id}", body=patch)

    assert answer.status == 200, answer.body
    assert answer.body["name"] == "fedora-data2" and answer.body["__description"] == "Data disk 2 of Fedora"
    assert answer.body["id"] == image.id and answer.body["status"] == "active"
    assert answer.body["updated_at"] >= image.updated_at
    (record,) = listed(stack, id=image.id)
    assert record == answer.body


def test_a_patch_can_remove_the_description_and_set_the_enterprise_project(stack: Any) -> None:
    image = stored_image(description="old")
    patch = [
        {"op": "remove", "path": "/__description"},
        {"op": "add", "path": "/enterprise_project_id", "value": "6f5e4d3c-2b1a-4098-8765-43210fedcba9"},
        {"op": "replace", "path": "/min_ram", "value": "1024"},
    ]

    answer = stack.call_api("PATCH", f"/v2/cloudimages/{image.id}", body=patch)

    assert answer.status == 200, answer.body
    assert answer.body["__description"] == ""
    assert answer.body["enterprise_project_id"] == "6f5e4d3c-2b1a-4098-8765-43210fedcba9"
    assert answer.body["min_ram"] == 1024


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ([{"op": "replace", "path": "/name", "value": " spaced"}], "IMG.0003"),
        ([{"op": "replace", "path": "/name", "value": "n" * 129}], "IMG.0002"),
        ([{"op": "replace", "path": "/__description", "value": "<b>"}], "IMG.0054"),
        ([{"op": "replace", "path": "/min_disk", "value": "80"}], "IMG.0001"),
        ([{"op": "replace", "path": "/__support_kvm", "value": "true"}], "IMG.0001"),
        ([{"op": "remove", "path": "/name"}], "IMG.0001"),
        ([{"op": "move", "path": "/name", "value": "x"}], "IMG.0001"),
        ({"op": "replace", "path": "/name", "value": "x"}, "IMG.0001"),
    ],
    ids=["bad name", "long name", "bad description", "min_disk", "ECS attribute", "remove name", "move", "not a list"],
)
def test_a_patch_breaking_a_rule_is_refused_and_changes_nothing(stack: Any, patch: Any, code: str) -> None:
    image = stored_image()

    answer = stack.call_api("PATCH", f"/v2/cloudimages/{image.id}", body=patch)

    assert (answer.status, answer.body["error"]["code"]) == (400, code)
    assert listed(stack, id=image.id)[0]["name"] == "fedora-data1"


@pytest.mark.parametrize("status", ["saving", "killed"])
def test_only_an_active_image_can_be_updated(stack: Any, status: str) -> None:
    image = stored_image(status=status)

    answer = stack.call_api(
        "PATCH", f"/v2/cloudimages/{image.id}", body=[{"op": "replace", "path": "/name", "value": "x"}]
    )

    assert (answer.status, answer.body["error"]["code"]) == (400, "IMG.0046")
    assert ImageStore().get(image.id, PROJECT_ID).name == "fedora-data1"  # type: ignore[union-attr]


def test_another_projects_image_cannot_be_updated(stack: Any) -> None:
    image = stored_image(owner=OTHER_PROJECT_ID)

    answer = stack.call_api(
        "PATCH", f"/v2/cloudimages/{image.id}", body=[{"op": "replace", "path": "/name", "value": "x"}]
    )

    assert (answer.status, answer.body["error"]["code"]) == (404, "IMG.0404")


# ---------------------------------------------------------------------------------------------- tags
def test_tags_are_read_and_replaced_the_way_terraform_does_it(stack: Any) -> None:
    image = stored_image()
    tags_path = f"/v2/{PROJECT_ID}/images/{image.id}/tags"

    assert stack.call_api("GET", tags_path).body == {"tags": [{"key": "aaa", "value": "111"}]}
    # When the old tags are deleted and the new ones created
    deleted = stack.call_api(
        "POST", f"{tags_path}/action", body={"action": "delete", "tags": [{"key": "aaa", "value": "111"}]}
    )
    created = stack.call_api(
        "POST",
        f"{tags_path}/action",
        body={"action": "create", "tags": [{"key": "os", "value": "version.1.2"}, {"key": " 环境 ", "value": "生产"}]},
    )
    # Then both answer 204 and the image holds the new tags only
    assert (deleted.status, deleted.body, created.status, created.body) == (204, None, 204, None)
    assert stack.call_api("GET", tags_path).body == {
        "tags": [{"key": "os", "value": "version.1.2"}, {"key": "环境", "value": "生产"}]
    }
    assert listed(stack, id=image.id)[0]["tags"] == ["os.version.1.2", "环境.生产"]
    assert [record["name"] for record in listed(stack, tag="os=version.1.2")] == ["fedora-data1"]


def test_creating_a_tag_whose_key_exists_changes_its_value(stack: Any) -> None:
    image = stored_image()
    body = {"action": "create", "tags": [{"key": "aaa", "value": "222"}]}

    assert stack.call_api("POST", f"/v2/{PROJECT_ID}/images/{image.id}/tags/action", body=body).status == 204

    assert ImageStore().get(image.id, PROJECT_ID).tags == ["aaa.222"]  # type: ignore[union-attr]


def test_a_tag_action_that_would_leave_more_than_ten_tags_is_refused(stack: Any) -> None:
    image = stored_image()  # holds one tag already
    body = {"action": "create", "tags": [{"key": f"k{n}", "value": "v"} for n in range(10)]}

    answer = stack.call_api("POST", f"/v2/{PROJECT_ID}/images/{image.id}/tags/action", body=body)

    assert (answer.status, answer.body["error"]["code"]) == (400, "IMG.0116")
    assert ImageStore().get(image.id, PROJECT_ID).tags == ["aaa.111"]  # type: ignore[union-attr]


def test_tags_of_an_image_in_another_project_path_are_refused(stack: Any) -> None:
    image = stored_image()

    answer = stack.call_api("GET", f"/v2/{OTHER_PROJECT_ID}/images/{image.id}/tags")

    assert (answer.status, answer.body["error"]["code"]) == (400, "IMG.0067")


def test_the_tags_of_an_unknown_image_are_not_found(stack: Any) -> None:
    answer = stack.call_api("GET", f"/v2/{PROJECT_ID}/images/aa5306f7-0000-4000-8000-00000000dead/tags")
    assert (answer.status, answer.body["error"]["code"]) == (404, "IMG.0404")


# ---------------------------------------------------------------------------------------------- quota
def test_the_quota_counts_the_images_that_count_against_it(stack: Any) -> None:
    stored_image("one")
    stored_image("two", status="saving")
    stored_image("three", status="killed")

    answer = stack.call_api("GET", "/v1/cloudimages/quota")

    assert answer.status == 200
    quota = get_settings().max_private_images
    assert answer.body == {
        "quotas": {"resources": [{"type": "image", "used": 2, "quota": quota, "min": 1, "max": quota}]}
    }


# ---------------------------------------------------------------------------------------------- delete
def test_deleting_an_image_removes_its_snapshot_and_record_and_frees_its_quota_place(stack: Any) -> None:
    # Given a project at its quota of one image
    image = stored_image(quota=1)
    snapshot_id = snapshot_of(image.id)
    with pytest.raises(ImageQuotaError):
        stored_image("second", quota=1)

    # When the image is deleted
    answer = stack.call_api("DELETE", f"/v2/images/{image.id}")

    # Then it answers 204, the snapshot is gone, the image leaves every listing and its quota place is free
    assert (answer.status, answer.body) == (204, None)
    assert not snapshot_exists(snapshot_id)
    assert listed(stack, id=image.id) == [] and listed(stack) == []
    assert stack.call_api("GET", "/v1/cloudimages/quota").body["quotas"]["resources"][0]["used"] == 0
    assert stack.table("ProjectsTable").get_item(Key={"project_id": PROJECT_ID})["Item"][IMAGES_COUNTED] == 0
    stored_image("second", quota=1)
    # And deleting it again finds nothing
    again = stack.call_api("DELETE", f"/v2/images/{image.id}")
    assert (again.status, again.body["error"]["code"]) == (404, "IMG.0404")


def test_a_delete_may_carry_imss_optional_body(stack: Any) -> None:
    image = stored_image()
    assert stack.call_api("DELETE", f"/v2/images/{image.id}", body={"delete_backup": False}).status == 204


@pytest.mark.parametrize("status", ["queued", "saving"])
def test_an_image_still_being_imported_cannot_be_deleted(stack: Any, status: str) -> None:
    image = stored_image(status=status)
    snapshot_id = snapshot_of(image.id)

    answer = stack.call_api("DELETE", f"/v2/images/{image.id}")

    assert (answer.status, answer.body["error"]["code"]) == (400, "IMG.0090")
    assert snapshot_exists(snapshot_id)
    assert [record["status"] for record in listed(stack, id=image.id)] == [status]


def test_deleting_a_killed_image_removes_it_without_touching_the_quota_count(stack: Any) -> None:
    stored_image("active-one")
    killed = stored_image("failed-one", status="killed")

    assert stack.call_api("DELETE", f"/v2/images/{killed.id}").status == 204

    assert [record["name"] for record in listed(stack)] == ["active-one"]
    assert stack.call_api("GET", "/v1/cloudimages/quota").body["quotas"]["resources"][0]["used"] == 1


def test_another_projects_image_cannot_be_deleted(stack: Any) -> None:
    image = stored_image(owner=OTHER_PROJECT_ID)
    answer = stack.call_api("DELETE", f"/v2/images/{image.id}")
    assert (answer.status, answer.body["error"]["code"]) == (404, "IMG.0404")
    assert ImageStore().get(image.id, OTHER_PROJECT_ID).status == "active"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- the rest
def test_the_v2_1_safe_mode_route_creates_a_data_image_like_v1(stack: Any) -> None:
    body = {"name": "fedora-data1", "image_url": "image-test:fedora_data1.qcow2", "min_disk": 40}
    answer = stack.call_api("POST", "/v2.1/cloudimages/dataimages/action", body=body)
    assert answer.status == 200 and len(answer.body["job_id"]) == 32


def call_route(stack: Any, method: str, path: str) -> tuple[dict[str, Any], Any]:
    """The function's raw answer to the request, and the Lambda context it ran with."""
    from diskport_emulator import http_api_event

    route = next(route for route in stack.local.api_routes() if route.match(method, path) is not None)
    event = http_api_event(route, path=path, path_parameters=route.match(method, path) or None, account_id=PROJECT_ID)
    context = stack.lambdas.context(route.function)
    return stack.lambdas.handler(route.function)(event, context), context


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/cloudimages"),
        ("GET", "/v1/cloudimages/quota"),
        ("DELETE", "/v2/images/unknown"),
        ("PATCH", "/v2/cloudimages/unknown"),
        ("GET", "/v1/cloudimages/job/unknown"),
    ],
)
def test_every_answer_carries_the_lambda_request_id(stack: Any, method: str, path: str) -> None:
    result, context = call_route(stack, method, path)
    assert result["headers"]["X-Request-Id"] == context.aws_request_id


def test_the_request_id_of_an_answer_finds_its_log_lines(stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    from diskport.observability import logger

    with caplog.at_level(logging.INFO, logger="diskport"):
        result, _ = call_route(stack, "DELETE", "/v2/images/unknown")

    # Each line as the function's logger writes it (JSON, with the Lambda context's keys)
    lines = [json.loads(logger.registered_formatter.format(record)) for record in caplog.records]
    refused = [line for line in lines if line["message"] == "Request refused"]
    assert refused, lines
    assert {line["function_request_id"] for line in refused} == {result["headers"]["X-Request-Id"]}
