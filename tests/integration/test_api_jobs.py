"""Creating an import job and reading it back, as an IMS client sees it (ims-api.md §1-§3)."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from diskport.settings import get_settings
from diskport.stores import Stores
from diskport.stores.jobs import JobStore

PROJECT_ID = "0123456789ab"  # the account the test requests are signed with (tests/conftest.py)
OTHER_PROJECT_ID = "999999999999"
ROUTE = "/v1/cloudimages/dataimages/action"
REQUEST = {
    "name": "fedora-data1",
    "image_url": "image-test:fedora_data1.qcow2",
    "description": "Data disk 1 of Fedora",
    "min_disk": 40,
    "tags": ["aaa.111", "bbb.222"],
    "os_type": "Linux",
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_a_valid_request_records_an_init_job_and_starts_its_execution(stack: Any) -> None:
    # When
    answer = stack.call_api("POST", ROUTE, body=REQUEST)

    # Then the caller gets a 32-hex job id
    assert answer.status == 200
    job_id = answer.body["job_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert set(answer.body) == {"job_id"}
    # and the stored job holds the validated request for the pipeline
    item = stack.table("JobsTable").get_item(Key={"job_id": job_id})["Item"]
    assert item["status"] == "INIT"
    assert item["project_id"] == PROJECT_ID
    assert item["job_type"] == "imsImportDataImageJob"
    assert TIMESTAMP.fullmatch(item["begin_time"])
    assert item["request"] == {**REQUEST, "min_disk": 40}
    assert item["origin"] == "api"
    # and one execution runs, named after the job, with the job id as input
    (execution,) = stack.executions()
    assert execution["name"] == job_id
    described = boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"job_id": job_id}


def test_the_job_answers_the_ims_job_schema(stack: Any) -> None:
    # Given
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]

    # When
    answer = stack.call_api("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}")

    # Then
    assert answer.status == 200
    assert answer.body == {
        "job_id": job_id,
        "job_type": "imsImportDataImageJob",
        "begin_time": answer.body["begin_time"],
        "end_time": None,
        "status": "INIT",
        "error_code": None,
        "fail_reason": None,
        "entities": {"image_id": None, "image_name": "fedora-data1"},
    }
    assert TIMESTAMP.fullmatch(answer.body["begin_time"])


def test_the_progress_view_adds_percent_and_current_task(stack: Any) -> None:
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]

    answer = stack.call_api("GET", f"/v1/cloudimages/job/{job_id}")

    assert answer.status == 200
    assert answer.body["status"] == "INIT"
    assert answer.body["entities"] == {
        "image_id": None,
        "image_name": "fedora-data1",
        "process_percent": 0.0,
        "current_task": "",
    }


def test_a_finished_jobs_progress_is_1_with_no_current_task_as_ims_answers_it(stack: Any) -> None:
    # querying_the_progress_of_an_asynchronous_job.rst ends its example with "process_percent": 1, "current_task": ""
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]
    JobStore().mark_succeeded(job_id, image_id="aa5306f7-0000-4000-8000-000000000001", image_name="fedora-data1")

    entities = stack.call_api("GET", f"/v1/cloudimages/job/{job_id}").body["entities"]

    assert entities["process_percent"] == 1
    assert entities["current_task"] == ""


def test_a_finished_job_reports_its_image_and_end_time(stack: Any) -> None:
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]
    JobStore().mark_succeeded(job_id, image_id="aa5306f7-0000-4000-8000-000000000001", image_name="fedora-data1")

    answer = stack.call_api("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}")

    assert answer.body["status"] == "SUCCESS"
    assert answer.body["entities"] == {"image_id": "aa5306f7-0000-4000-8000-000000000001", "image_name": "fedora-data1"}
    assert TIMESTAMP.fullmatch(answer.body["end_time"])


def test_a_failed_job_reports_its_code_and_reason(stack: Any) -> None:
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]
    JobStore().mark_failed(job_id, error_code="IMG.0072", fail_reason="QED images are not supported.")
    # an ended job never changes again
    assert not JobStore().mark_succeeded(job_id, image_id="x", image_name="y")

    answer = stack.call_api("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}")

    assert answer.body["status"] == "FAIL"
    assert answer.body["error_code"] == "IMG.0072"
    assert answer.body["fail_reason"] == "QED images are not supported."
    assert answer.body["entities"]["image_id"] is None


def test_another_projects_job_is_not_found_through_either_route(stack: Any) -> None:
    job_id = stack.call_api("POST", ROUTE, body=REQUEST, project_id=PROJECT_ID).body["job_id"]

    by_own_path = stack.call_api("GET", f"/v1/{OTHER_PROJECT_ID}/jobs/{job_id}", project_id=OTHER_PROJECT_ID)
    progress = stack.call_api("GET", f"/v1/cloudimages/job/{job_id}", project_id=OTHER_PROJECT_ID)

    for answer in (by_own_path, progress):
        assert answer.status == 404
        assert answer.body["error"]["code"] == "IMG.0404"
        assert "fedora" not in json.dumps(answer.body)


def test_a_path_naming_another_project_is_refused(stack: Any) -> None:
    job_id = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]

    answer = stack.call_api("GET", f"/v1/{OTHER_PROJECT_ID}/jobs/{job_id}", project_id=PROJECT_ID)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "IMG.0067"


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job", "A" * 32])
def test_an_unknown_job_is_not_found(stack: Any, job_id: str) -> None:
    answer = stack.call_api("GET", f"/v1/{PROJECT_ID}/jobs/{job_id}")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "IMG.0404"


def test_a_project_at_its_limit_of_running_imports_is_told_to_wait(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 2 imports at once, both in use
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "2")
    get_settings.cache_clear()
    first = stack.call_api("POST", ROUTE, body=REQUEST).body["job_id"]
    stack.call_api("POST", ROUTE, body=REQUEST)

    # When a third arrives
    refused = stack.call_api("POST", ROUTE, body=REQUEST)
    # Then it is refused with the status IMS's error-code table gives IMG.0194, and nothing is written
    assert refused.status == 400
    assert refused.body["error"]["code"] == "IMG.0194"
    assert len(stack.table("JobsTable").scan()["Items"]) == 2
    # and another project is not affected
    assert stack.call_api("POST", ROUTE, body=REQUEST, project_id=OTHER_PROJECT_ID).status == 200

    # When one of the first project's imports ends, a new one is accepted
    JobStore().mark_failed(first, error_code="IMG.0057", fail_reason="broken")
    assert stack.call_api("POST", ROUTE, body=REQUEST).status == 200


def test_when_the_execution_cannot_start_the_caller_gets_img_0061_and_the_job_does_not_stay_init(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a state machine that does not exist
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    get_settings.cache_clear()

    answer = stack.call_api("POST", ROUTE, body=REQUEST)

    # IMS's error-code table answers IMG.0061 (unknown system error) with 400, as every IMG code
    assert answer.status == 400
    assert answer.body["error"]["code"] == "IMG.0061"
    (item,) = stack.table("JobsTable").scan()["Items"]
    assert item["status"] == "FAIL"
    assert item["error_code"] == "IMG.0061"
    # and it holds none of the project's import slots
    assert JobStore().imports_under_way(PROJECT_ID) == 0


def test_an_unsigned_request_is_refused_when_deployed(stack: Any) -> None:
    from diskport_emulator import http_api_event

    route = next(route for route in stack.local.api_routes() if route.method == "POST")
    event = http_api_event(route, path=ROUTE, body=json.dumps(REQUEST), headers={"content-type": "application/json"})

    result = stack.lambdas.handler(route.function)(event, stack.lambdas.context(route.function))

    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"]["code"] == "IMG.0067"
    assert stack.table("JobsTable").scan()["Items"] == []


def test_concurrent_creates_never_exceed_the_projects_limit(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from diskport.domain.imports import start_import
    from diskport.domain.requests import CreateDataImageRequest
    from diskport.errors import FlowControlError

    # Given a limit of 5 imports at once
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "5")
    get_settings.cache_clear()
    request = CreateDataImageRequest.model_validate(REQUEST)

    # When 20 creates race each other (the count and the job are one transaction)
    def create(_: int) -> str:
        try:
            return start_import(request, PROJECT_ID, Stores()).job_id
        except FlowControlError:
            return "refused"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(create, range(20)))

    # Then exactly 5 are accepted, and the count matches the jobs
    assert len([outcome for outcome in outcomes if outcome != "refused"]) == 5
    assert len(stack.table("JobsTable").scan()["Items"]) == 5
    assert JobStore().imports_under_way(PROJECT_ID) == 5
