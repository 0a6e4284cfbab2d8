"""`GET /v1/cloudimages/jobs` (a diskport extension): the caller's jobs, newest first, page by page."""

from __future__ import annotations

from typing import Any

from diskport.stores.jobs import Job, JobStore

PROJECT_ID = "0123456789ab"  # the account the test requests are signed with (tests/conftest.py)
OTHER_PROJECT_ID = "999999999999"


def _job(number: int, project_id: str = PROJECT_ID) -> Job:
    return Job(
        job_id=f"{number:032x}",
        project_id=project_id,
        begin_time=f"2026-01-0{number}T10:00:00.000Z",
        status="SUCCESS" if number % 2 else "RUNNING",
        request={"name": f"data-{number}"},
    )


def test_the_projects_jobs_are_listed_newest_first_across_pages(stack: Any) -> None:
    # Given three jobs of the caller's project and one of another project
    store = JobStore()
    for job in (_job(1), _job(3), _job(2), _job(4, OTHER_PROJECT_ID)):
        store.create(job)
    # When the first page of two is asked for
    first = stack.call_api("GET", "/v1/cloudimages/jobs", query={"limit": "2"})
    # Then it holds the two newest jobs of the project, as the progress route shows them, and a link to the rest
    assert first.status == 200, first.body
    assert [job["job_id"] for job in first.body["jobs"]] == [f"{3:032x}", f"{2:032x}"]
    assert first.body["jobs"][0]["entities"]["image_name"] == "data-3"
    assert first.body["jobs"][0]["status"] == "SUCCESS"
    path, _, query = first.body["next"].partition("?")
    # And the link gives the last one, with no further page
    second = stack.call_api("GET", path, query=dict(pair.split("=") for pair in query.split("&")))
    assert [job["job_id"] for job in second.body["jobs"]] == [f"{1:032x}"]
    assert second.body["next"] is None


def test_a_marker_of_another_projects_job_is_not_found(stack: Any) -> None:
    JobStore().create(_job(4, OTHER_PROJECT_ID))
    answer = stack.call_api("GET", "/v1/cloudimages/jobs", query={"marker": f"{4:032x}"})
    assert answer.status == 404
    assert answer.body["error"]["code"] == "IMG.0404"
