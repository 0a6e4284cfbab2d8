"""Isolation: one project never reads, lists or affects another project's jobs and images, through any route.

Two projects (two AWS accounts when deployed, signed in with IAM) each import an image of the same name. Every
route `template.yaml` declares is then called by the second project with the first project's ids, names and
paths, and must answer exactly what it answers for ids that never existed. `ROUTES_COVERED` lists the routes
this suite exercises: a new route in the template fails the suite until it is covered here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from diskport.engine import BLOCK_SIZE
from diskport.settings import get_settings
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

from diskport_emulator.template import LOCAL_ACCOUNT_ID

from .conftest import ImageFile, Importer
from .faults import error_answer

OWNER = "111111111111"
INTRUDER = "222222222222"
CREATE = "/v1/cloudimages/dataimages/action"
ROUTES_COVERED = {
    ("POST", "/v1/cloudimages/dataimages/action"),
    ("GET", "/v1/{project_id}/jobs/{job_id}"),
    ("GET", "/v1/cloudimages/job/{job_id}"),
    ("GET", "/v2/cloudimages"),
    ("POST", "/v2.1/cloudimages/dataimages/action"),
    ("PATCH", "/v2/cloudimages/{image_id}"),
    ("DELETE", "/v2/images/{image_id}"),
    ("GET", "/v2/{project_id}/images/{image_id}/tags"),
    ("POST", "/v2/{project_id}/images/{image_id}/tags/action"),
    ("GET", "/v1/cloudimages/quota"),
    ("GET", "/v1/cloudimages/jobs"),
}
NEVER_EXISTED_JOB = "f" * 32
NEVER_EXISTED_IMAGE = "00000000-0000-5000-8000-000000000000"


@pytest.fixture
def chunk_bytes() -> int:
    """One chunk per import: isolation does not depend on how many convert workers run."""
    return 1024 * BLOCK_SIZE


@dataclass(frozen=True)
class ProjectImport:
    project_id: str
    job_id: str
    image_id: str
    snapshot_id: str


@pytest.fixture
def two_projects(importer: Importer, image_files: dict[str, ImageFile]) -> tuple[ProjectImport, ProjectImport]:
    """The owner and the intruder have each imported a file as an image named 'shared-name'."""
    imports = []
    for project_id, disk_format in ((OWNER, "qcow2"), (INTRUDER, "vhd")):
        url = importer.upload(image_files[disk_format].path, f"{project_id}/disk.{disk_format}")
        job_id = importer.start(url, project_id=project_id, name="shared-name")
        job = importer.wait_for_end(job_id, project_id=project_id)
        assert job["status"] == "SUCCESS", job
        image_id = job["entities"]["image_id"]
        imports.append(ProjectImport(project_id, job_id, image_id, importer.image_record(image_id)["snapshot_id"]))
    return imports[0], imports[1]


def test_every_api_route_of_the_template_is_covered_by_this_suite(importer: Importer) -> None:
    declared = {(route.method, route.path) for route in importer.stack.local.api_routes()}
    assert declared == ROUTES_COVERED


def test_another_projects_job_is_answered_exactly_like_a_job_that_never_existed(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, _ = two_projects
    stack = importer.stack
    for path in (f"/v1/{INTRUDER}/jobs/{{}}", "/v1/cloudimages/job/{}"):
        # When the intruder asks for the owner's job, and for a job that never existed
        theirs = stack.call_api("GET", path.format(owner.job_id), project_id=INTRUDER)
        nobodys = stack.call_api("GET", path.format(NEVER_EXISTED_JOB), project_id=INTRUDER)
        # Then both are "not found", with the same words apart from the id asked for
        assert theirs.status == nobodys.status == 404
        assert json.dumps(theirs.body).replace(owner.job_id, "<id>") == json.dumps(nobodys.body).replace(
            NEVER_EXISTED_JOB, "<id>"
        )
        # And nothing of the owner's job leaks
        assert owner.image_id not in json.dumps(theirs.body)


def test_a_job_path_naming_another_project_is_refused_without_looking_the_job_up(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, _ = two_projects
    # When the intruder names the owner's project in the path, with the owner's job and with an unknown job
    theirs = importer.stack.call_api("GET", f"/v1/{OWNER}/jobs/{owner.job_id}", project_id=INTRUDER)
    nobodys = importer.stack.call_api("GET", f"/v1/{OWNER}/jobs/{NEVER_EXISTED_JOB}", project_id=INTRUDER)
    # Then both are refused alike, as a project the caller's credentials do not stand for
    assert theirs.status == nobodys.status == 400
    assert theirs.body == nobodys.body
    assert theirs.body["error"]["code"] == "IMG.0067"


LIST_QUERIES = [{}, {"name": "shared-name"}, {"status": "active"}, {"__imagetype": "private"}, {"limit": "1000"}]


def test_the_image_list_holds_only_the_callers_images_whatever_the_filter(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, intruder = two_projects
    for query in LIST_QUERIES:
        # When the intruder lists images, with any filter
        listed = importer.images(project_id=INTRUDER, **query)
        # Then it sees its own image, and none of the owner's
        assert [image["id"] for image in listed] == [intruder.image_id], query
        assert all(image["owner"] == INTRUDER for image in listed)
        assert owner.snapshot_id not in json.dumps(listed)


def test_another_projects_image_id_finds_nothing(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, _ = two_projects
    assert importer.images(project_id=INTRUDER, id=owner.image_id) == []
    assert importer.images(project_id=INTRUDER, id=owner.image_id, name="shared-name") == []
    assert importer.images(project_id=INTRUDER, id=NEVER_EXISTED_IMAGE) == []


def test_another_projects_image_as_a_page_marker_is_refused_like_an_unknown_marker(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, _ = two_projects
    stack = importer.stack
    theirs = stack.call_api("GET", "/v2/cloudimages", query={"marker": owner.image_id}, project_id=INTRUDER)
    nobodys = stack.call_api("GET", "/v2/cloudimages", query={"marker": NEVER_EXISTED_IMAGE}, project_id=INTRUDER)
    assert theirs.status == nobodys.status == 404
    assert json.dumps(theirs.body).replace(owner.image_id, "<id>") == json.dumps(nobodys.body).replace(
        NEVER_EXISTED_IMAGE, "<id>"
    )


IMAGE_CALLS = [
    ("PATCH", "/v2/cloudimages/{image}", [{"op": "replace", "path": "/name", "value": "taken-over"}]),
    ("DELETE", "/v2/images/{image}", None),
    ("GET", "/v2/{project}/images/{image}/tags", None),
    ("POST", "/v2/{project}/images/{image}/tags/action", {"action": "delete", "tags": [{"key": "k", "value": ""}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), IMAGE_CALLS, ids=[f"{call[0]} {call[1]}" for call in IMAGE_CALLS])
def test_another_projects_image_cannot_be_changed_read_or_deleted_and_is_answered_like_no_image(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport], method: str, path: str, body: Any
) -> None:
    owner, _ = two_projects
    owners_images_before = importer.images(project_id=OWNER)
    stack = importer.stack
    # When the intruder calls the route with the owner's image (in its own project's path), and with no image
    theirs = stack.call_api(method, path.format(project=INTRUDER, image=owner.image_id), body=body, project_id=INTRUDER)
    nobodys = stack.call_api(
        method, path.format(project=INTRUDER, image=NEVER_EXISTED_IMAGE), body=body, project_id=INTRUDER
    )
    # Then both are "not found" in the same words, and the owner's image and snapshot are untouched
    assert theirs.status == nobodys.status == 404
    assert json.dumps(theirs.body).replace(owner.image_id, "<id>") == json.dumps(nobodys.body).replace(
        NEVER_EXISTED_IMAGE, "<id>"
    )
    assert importer.images(project_id=OWNER) == owners_images_before
    assert importer.snapshots()[owner.snapshot_id] == "completed"


@pytest.mark.parametrize("route", ["/v2/{project}/images/{image}/tags", "/v2/{project}/images/{image}/tags/action"])
def test_a_tags_path_naming_another_project_is_refused_without_looking_the_image_up(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport], route: str
) -> None:
    owner, _ = two_projects
    method, body = (
        ("POST", {"action": "create", "tags": [{"key": "k", "value": "v"}]}) if "action" in route else ("GET", None)
    )
    theirs = importer.stack.call_api(
        method, route.format(project=OWNER, image=owner.image_id), body=body, project_id=INTRUDER
    )
    nobodys = importer.stack.call_api(
        method, route.format(project=OWNER, image=NEVER_EXISTED_IMAGE), body=body, project_id=INTRUDER
    )
    assert theirs.status == nobodys.status == 400
    assert theirs.body == nobodys.body and theirs.body["error"]["code"] == "IMG.0067"


def test_the_quota_counts_only_the_callers_images(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    for project_id in (OWNER, INTRUDER):
        answer = importer.stack.call_api("GET", "/v1/cloudimages/quota", project_id=project_id)
        assert answer.body["quotas"]["resources"][0]["used"] == 1


def test_a_safe_mode_create_belongs_to_the_caller_alone(importer: Importer) -> None:
    request = {"name": "d", "image_url": "images:disks/d.qcow2", "min_disk": 40}
    created = importer.stack.call_api("POST", "/v2.1/cloudimages/dataimages/action", body=request, project_id=OWNER)
    job_id = created.body["job_id"]
    assert importer.stack.call_api("GET", f"/v1/cloudimages/job/{job_id}", project_id=INTRUDER).status == 404
    assert importer.stack.call_api("GET", f"/v1/cloudimages/job/{job_id}", project_id=OWNER).status == 200


def test_creating_in_one_project_leaves_the_other_projects_jobs_and_images_unchanged(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport], image_files: dict[str, ImageFile]
) -> None:
    owner, _ = two_projects
    owners_job_before = importer.job(owner.job_id, project_id=OWNER)
    owners_images_before = importer.images(project_id=OWNER)

    # When the intruder imports the very file the owner imported, under the same name, and it runs to its end
    url = importer.upload(image_files["qcow2"].path, f"{OWNER}/disk.qcow2")
    job_id = importer.start(url, project_id=INTRUDER, name="shared-name")
    assert importer.wait_for_end(job_id, project_id=INTRUDER)["status"] == "SUCCESS"

    # Then the owner's job and images are exactly as they were
    assert importer.job(owner.job_id, project_id=OWNER) == owners_job_before
    assert importer.images(project_id=OWNER) == owners_images_before
    # And the owner's snapshot still exists
    assert importer.snapshots()[owner.snapshot_id] == "completed"


def test_one_projects_imports_under_way_never_count_against_another_projects_limit(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit of one import under way per project, used by the owner
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "1")
    get_settings.cache_clear()
    request = {"name": "d", "image_url": "images:disks/d.qcow2", "min_disk": 40}
    assert stack.call_api("POST", CREATE, body=request, project_id=OWNER).status == 200
    assert stack.call_api("POST", CREATE, body=request, project_id=OWNER).status == 400
    # When the intruder starts an import, then it is accepted
    assert stack.call_api("POST", CREATE, body=request, project_id=INTRUDER).status == 200


def test_one_projects_images_never_count_against_another_projects_quota(
    importer: Importer, image_files: dict[str, ImageFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a quota of one private image per project, used by the owner
    monkeypatch.setenv("MAX_PRIVATE_IMAGES", "1")
    get_settings.cache_clear()
    url = importer.upload(image_files["raw"].path, "disk.raw")
    assert importer.wait_for_end(importer.start(url, project_id=OWNER), project_id=OWNER)["status"] == "SUCCESS"
    refused = importer.wait_for_end(importer.start(url, project_id=OWNER), project_id=OWNER)
    assert (refused["status"], refused["error_code"]) == ("FAIL", "IMG.0015")
    # When the intruder imports, then its import succeeds
    assert importer.wait_for_end(importer.start(url, project_id=INTRUDER), project_id=INTRUDER)["status"] == "SUCCESS"


def test_a_job_started_by_an_upload_belongs_to_the_stacks_account_and_to_nobody_else(
    importer: Importer, image_files: dict[str, ImageFile]
) -> None:
    # Given a file uploaded to the watched bucket, whose notification reached the trigger
    importer.upload(image_files["vhd"].path, "uploads/data.vhd")
    stack = importer.stack
    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=stack.local.physical_name("UploadQueue"))["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]} for m in messages]
    function = "UploadTriggerFunction"
    stack.lambdas.handler(function)({"Records": records}, stack.lambdas.context(function))
    (job,) = [item for item in stack.table("JobsTable").scan()["Items"] if item["origin"] == "upload"]
    upload_project = get_settings().upload_project_id
    assert upload_project == LOCAL_ACCOUNT_ID
    job_id = job["job_id"]
    assert importer.wait_for_end(job_id, project_id=upload_project)["status"] == "SUCCESS"

    # Then the stack's account sees the job and its image
    image_id = importer.job(job_id, project_id=upload_project)["entities"]["image_id"]
    assert [image["id"] for image in importer.images(project_id=upload_project)] == [image_id]
    # And another project sees neither, through any route
    assert stack.call_api("GET", f"/v1/{INTRUDER}/jobs/{job_id}", project_id=INTRUDER).status == 404
    assert stack.call_api("GET", f"/v1/cloudimages/job/{job_id}", project_id=INTRUDER).status == 404
    assert importer.images(project_id=INTRUDER) == []
    assert importer.images(project_id=INTRUDER, id=image_id) == []
    assert importer.images(project_id=INTRUDER, name="data") == []


@pytest.fixture
def s3_checks_bucket_owners(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """S3's own check, which moto skips: a request naming an ExpectedBucketOwner other than the bucket's gets 403.

    Every bucket of the emulated account belongs to LOCAL_ACCOUNT_ID. Answers the owners the requests named.
    """
    serve = BotocoreStubber.__call__
    named: list[str] = []

    def answer_like_s3(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        owner = request.headers.get("x-amz-expected-bucket-owner")
        if stubber.enabled and event_name.startswith("before-send.s3.") and owner is not None:
            owner = owner.decode() if isinstance(owner, bytes) else str(owner)
            named.append(owner)
            if owner != LOCAL_ACCOUNT_ID:
                status, headers, body = error_answer("s3", 403, "AccessDenied")
                return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        return serve(stubber, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", answer_like_s3)
    return named


def test_a_project_cannot_import_a_file_from_a_bucket_another_account_owns(
    importer: Importer, image_files: dict[str, ImageFile], s3_checks_bucket_owners: list[str]
) -> None:
    # Given a file in a bucket of the stack's account, which the service's role may read
    url = importer.upload(image_files["qcow2"].path, "private/disk.qcow2")

    # When another account asks the service to import it
    job = importer.wait_for_end(importer.start(url, project_id=INTRUDER), project_id=INTRUDER)

    # Then S3 was asked to check the bucket's owner, refused, and the import failed without reading the file
    assert set(s3_checks_bucket_owners) == {INTRUDER}
    assert (job["status"], job["error_code"]) == ("FAIL", "IMG.0069"), job
    assert importer.images(project_id=INTRUDER, status="active") == []
    # And the account that owns the bucket imports the same file
    owned = importer.wait_for_end(importer.start(url, project_id=LOCAL_ACCOUNT_ID), project_id=LOCAL_ACCOUNT_ID)
    assert owned["status"] == "SUCCESS", owned


PARTNER = "333333333333"
PARTNER_BUCKET = "partner-images"


@pytest.fixture
def partner_bucket_of_another_account(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A bucket owned by another account, listed in SourceBuckets; S3 refuses a request naming another owner.

    The stack is deployed with the bucket in SourceBuckets (`stack_parameters`), so the functions' roles may
    read it. Answers the owners requests to that bucket named (S3's check, which moto skips).
    """
    boto3.client("s3").create_bucket(Bucket=PARTNER_BUCKET)
    serve = BotocoreStubber.__call__
    named: list[str] = []

    def answer_like_s3(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        owner = request.headers.get("x-amz-expected-bucket-owner")
        to_partner = stubber.enabled and event_name.startswith("before-send.s3.") and PARTNER_BUCKET in request.url
        if to_partner and owner is not None:
            owner = owner.decode() if isinstance(owner, bytes) else str(owner)
            named.append(owner)
            if owner != PARTNER:
                status, headers, body = error_answer("s3", 403, "AccessDenied")
                return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        return serve(stubber, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", answer_like_s3)
    return named


@pytest.mark.parametrize("stack_parameters", [{"SourceBuckets": f"images-a,{PARTNER_BUCKET}"}])
def test_a_file_in_another_accounts_bucket_listed_in_source_buckets_imports(
    importer: Importer, image_files: dict[str, ImageFile], partner_bucket_of_another_account: list[str]
) -> None:
    # Given a file in a partner's bucket the operator listed in SourceBuckets
    boto3.client("s3").put_object(
        Bucket=PARTNER_BUCKET, Key="disks/disk.vmdk", Body=image_files["vmdk"].path.read_bytes()
    )

    # When the stack's own account (every caller of an HTTP API with IAM auth) imports it
    url = f"{PARTNER_BUCKET}:disks/disk.vmdk"
    job = importer.wait_for_end(importer.start(url, project_id=LOCAL_ACCOUNT_ID), project_id=LOCAL_ACCOUNT_ID)

    # Then the import succeeds, and no request asked S3 to check that the caller owns the partner's bucket
    assert job["status"] == "SUCCESS", job
    assert partner_bucket_of_another_account == []


def test_the_job_list_holds_only_the_callers_jobs_and_refuses_another_projects_as_a_marker(
    importer: Importer, two_projects: tuple[ProjectImport, ProjectImport]
) -> None:
    owner, intruder = two_projects
    stack = importer.stack
    # The intruder's list holds its own job and nothing of the owner's
    listed = stack.call_api("GET", "/v1/cloudimages/jobs", project_id=INTRUDER)
    assert [job["job_id"] for job in listed.body["jobs"]] == [intruder.job_id]
    assert owner.job_id not in json.dumps(listed.body) and owner.image_id not in json.dumps(listed.body)
    # And the owner's job as a page marker is answered exactly like a job that never existed
    theirs = stack.call_api("GET", "/v1/cloudimages/jobs", query={"marker": owner.job_id}, project_id=INTRUDER)
    nobodys = stack.call_api("GET", "/v1/cloudimages/jobs", query={"marker": NEVER_EXISTED_JOB}, project_id=INTRUDER)
    assert theirs.status == nobodys.status == 404
    assert json.dumps(theirs.body).replace(owner.job_id, "<id>") == json.dumps(nobodys.body).replace(
        NEVER_EXISTED_JOB, "<id>"
    )
