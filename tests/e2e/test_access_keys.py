"""IMS clients with AK/SK against local mode verifying signatures (`diskport serve --auth aksk`), as deployed.

Keys come from the CLI (`diskport access-key create --json`); requests are made by the official SDK, or signed by
the SDK's own signer and then sent as they are (or changed) over HTTP. Each refused request must answer 401 and
write nothing: no job, no execution.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkims.v2 import (
    CreateDataImageRequest,
    CreateDataImageRequestBody,
    ImsClient,
    ListImagesRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
)

from diskport_emulator import LocalStack

from .conftest import Answer, LocalModeProcess, SampleDisk, running_local_mode

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:huaweicloudsdkcore.signer.signer"),
    pytest.mark.filterwarnings("ignore:Method 'show_job' of ImsClient is deprecated:DeprecationWarning"),
]

PROJECT_A = "aaaa0000aaaa0000aaaa0000aaaa0000"
PROJECT_B = "bbbb1111bbbb1111bbbb1111bbbb1111"
CACHE_SECONDS = 1.0
CREATE = "/v1/cloudimages/dataimages/action"


@pytest.fixture(scope="module")
def verifying_local_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModeProcess]:
    with running_local_mode(
        tmp_path_factory.mktemp("aksk-local-mode") / "serve.log",
        "--auth",
        "aksk",
        # A warm instance keeps a key this long: after a revocation the test waits it out, as a client would
        ACCESS_KEY_CACHE_SECONDS=str(CACHE_SECONDS),
    ) as running:
        yield running


def create_key(local_mode: LocalModeProcess, project_id: str) -> dict[str, str]:
    made = local_mode.cli("access-key", "create", "--project", project_id, "--json")
    assert made.returncode == 0, made.stderr
    key: dict[str, str] = json.loads(made.stdout)
    assert set(key) == {"access_key", "secret_key", "project_id"} and key["project_id"] == project_id
    return key


@pytest.fixture(scope="module")
def key_a(verifying_local_mode: LocalModeProcess) -> dict[str, str]:
    return create_key(verifying_local_mode, PROJECT_A)


@pytest.fixture(scope="module")
def key_b(verifying_local_mode: LocalModeProcess) -> dict[str, str]:
    return create_key(verifying_local_mode, PROJECT_B)


@pytest.fixture(scope="module")
def source_file(verifying_local_mode: LocalModeProcess, sample_disk: SampleDisk) -> str:
    s3 = verifying_local_mode.aws_client("s3")
    s3.create_bucket(Bucket="aksk-images")
    s3.upload_file(str(sample_disk.qcow2), "aksk-images", "data1.qcow2")
    return "aksk-images:data1.qcow2"


def ims_client(local_mode: LocalModeProcess, access_key: str, secret_key: str, project_id: str) -> Any:
    credentials = BasicCredentials(access_key, secret_key, project_id)
    return ImsClient.new_builder().with_credentials(credentials).with_endpoints([local_mode.api_url]).build()


def signed_call(
    local_mode: LocalModeProcess,
    key: dict[str, str],
    method: str,
    path: str,
    body: Any = None,
    *,
    query: list[tuple[str, str]] | None = None,
    project_header: str | None = None,
    date: datetime | None = None,
    send_body: bytes | None = None,
) -> Answer:
    """A request signed by the SDK's signer with `key`, then sent; `send_body` replaces the body after signing."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    headers = {"Content-Type": "application/json", "X-Project-Id": project_header or key["project_id"]}
    if date is not None:
        headers["X-Sdk-Date"] = date.strftime("%Y%m%dT%H%M%SZ")
    request = SdkRequest(
        method=method,
        schema="http",
        host=urlsplit(local_mode.api_url).netloc,
        resource_path=path,
        query_params=list(query or []),
        header_params=headers,
        body=data,
    )
    Signer(BasicCredentials(key["access_key"], key["secret_key"], key["project_id"])).sign(request)
    sent = send_body if send_body is not None else data
    http_request = urllib.request.Request(
        local_mode.api_url + request.uri, data=sent, method=method, headers=dict(request.header_params)
    )
    try:
        with urllib.request.urlopen(http_request, timeout=30) as answer:
            return Answer(answer.status, json.loads(answer.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read() or b"null"))


def jobs_in_the_table(local_mode: LocalModeProcess) -> int:
    table = LocalStack(parameters={"Authentication": "AccessKey"}).physical_name("JobsTable")
    return int(local_mode.aws_client("dynamodb").scan(TableName=table, Select="COUNT")["Count"])


def follow_to_the_end(ims: Any, job_id: str) -> Any:
    deadline = time.monotonic() + 240
    job = ims.show_job(ShowJobRequest(job_id=job_id))
    while job.status not in ("SUCCESS", "FAIL"):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.5)
        job = ims.show_job(ShowJobRequest(job_id=job_id))
    return job


def create_body(source: str, name: str) -> dict[str, Any]:
    return {"name": name, "image_url": source, "min_disk": 40}


@pytest.fixture(scope="module")
def image_of_a(verifying_local_mode: LocalModeProcess, key_a: dict[str, str], source_file: str) -> dict[str, str]:
    """Project A's import, made with the SDK and a CLI-made key, followed to its end."""
    ims = ims_client(verifying_local_mode, key_a["access_key"], key_a["secret_key"], PROJECT_A)
    body = CreateDataImageRequestBody(name="data-of-a", image_url=source_file, min_disk=40, os_type="Linux")
    created = ims.create_data_image(CreateDataImageRequest(body=body))
    job = follow_to_the_end(ims, created.job_id)
    assert job.status == "SUCCESS", (job.error_code, job.fail_reason)
    return {"job_id": created.job_id, "image_id": job.entities.image_id}


def test_the_sdk_with_a_cli_made_key_imports_an_image_to_success(
    verifying_local_mode: LocalModeProcess, key_a: dict[str, str], image_of_a: dict[str, str]
) -> None:
    ims = ims_client(verifying_local_mode, key_a["access_key"], key_a["secret_key"], PROJECT_A)
    progress = ims.show_job_progress(ShowJobProgressRequest(job_id=image_of_a["job_id"]))
    assert progress.status == "SUCCESS"
    assert progress.entities.image_id == image_of_a["image_id"]
    images = ims.list_images(ListImagesRequest(id=image_of_a["image_id"])).images
    assert [(image.id, image.name, image.status) for image in images] == [
        (image_of_a["image_id"], "data-of-a", "active")
    ]
    # and the key's use shows in the list, its secret nowhere in it nor in the log
    listed = verifying_local_mode.cli("access-key", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [key for key in json.loads(listed.stdout) if key["access_key"] == key_a["access_key"]]
    assert entry["project_id"] == PROJECT_A and entry["status"] == "active" and entry["last_used_at"]
    assert key_a["secret_key"] not in listed.stdout
    assert key_a["secret_key"] not in verifying_local_mode.log.read_text(errors="replace")


def refused_creates(
    local_mode: LocalModeProcess, key: dict[str, str], source: str
) -> dict[str, tuple[Answer, dict[str, Any]]]:
    body = create_body(source, "never-made")
    twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)
    wrong_secret = {**key, "secret_key": key["secret_key"][::-1]}
    unknown_key = {**key, "access_key": "HSTNOSUCHACCESSKEY00"}
    changed = json.dumps({**body, "name": "changed-after-signing"}).encode("utf-8")
    return {
        "wrong secret": (signed_call(local_mode, wrong_secret, "POST", CREATE, body), body),
        "unknown key": (signed_call(local_mode, unknown_key, "POST", CREATE, body), body),
        "body changed after signing": (signed_call(local_mode, key, "POST", CREATE, body, send_body=changed), body),
        "date 20 minutes old": (signed_call(local_mode, key, "POST", CREATE, body, date=twenty_minutes_ago), body),
        "another project's id": (signed_call(local_mode, key, "POST", CREATE, body, project_header=PROJECT_B), body),
    }


def test_bad_signatures_get_401_and_write_nothing(
    verifying_local_mode: LocalModeProcess, key_a: dict[str, str], source_file: str, image_of_a: dict[str, str]
) -> None:
    jobs_before = jobs_in_the_table(verifying_local_mode)
    for case, (answer, _) in refused_creates(verifying_local_mode, key_a, source_file).items():
        assert answer.status == 401, (case, answer)
        assert answer.body["error"]["code"] == "APIGW.0301", case
    # another project's id in the path, with the key's own project in the header
    answer = signed_call(verifying_local_mode, key_a, "GET", f"/v1/{PROJECT_B}/jobs/{image_of_a['job_id']}")
    assert answer.status == 401
    assert jobs_in_the_table(verifying_local_mode) == jobs_before
    # and why is in the log, not in the answers
    log = verifying_local_mode.log.read_text(errors="replace")
    for reason in ("does not match", "unknown access key", "X-Sdk-Date is", "X-Project-Id", "in the path"):
        assert reason in log, reason


def test_the_sdk_with_a_wrong_secret_or_another_project_is_refused(
    verifying_local_mode: LocalModeProcess, key_a: dict[str, str], image_of_a: dict[str, str]
) -> None:
    for secret, project in ((key_a["secret_key"][::-1], PROJECT_A), (key_a["secret_key"], PROJECT_B)):
        ims = ims_client(verifying_local_mode, key_a["access_key"], secret, project)
        with pytest.raises(ClientRequestException) as refused:
            ims.show_job(ShowJobRequest(job_id=image_of_a["job_id"]))
        assert refused.value.status_code == 401
        assert refused.value.error_code == "APIGW.0301"


def test_a_revoked_key_is_refused_and_writes_nothing(verifying_local_mode: LocalModeProcess, source_file: str) -> None:
    key = create_key(verifying_local_mode, PROJECT_A)
    assert signed_call(verifying_local_mode, key, "GET", "/v2/cloudimages").status == 200
    revoked = verifying_local_mode.cli("access-key", "revoke", key["access_key"])
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(CACHE_SECONDS + 0.5)
    jobs_before = jobs_in_the_table(verifying_local_mode)
    answer = signed_call(verifying_local_mode, key, "POST", CREATE, create_body(source_file, "after-revoke"))
    assert answer.status == 401
    assert signed_call(verifying_local_mode, key, "GET", "/v2/cloudimages").status == 401
    assert jobs_in_the_table(verifying_local_mode) == jobs_before
    listed = json.loads(verifying_local_mode.cli("access-key", "list", "--json").stdout)
    assert [entry["status"] for entry in listed if entry["access_key"] == key["access_key"]] == ["revoked"]


def test_an_unsigned_request_is_refused(verifying_local_mode: LocalModeProcess) -> None:
    answer = verifying_local_mode.call("GET", "/v2/cloudimages")
    assert answer.status == 401
    assert answer.body["error"]["code"] == "APIGW.0301"


# ---------------------------------------------------------------------------------------------- isolation
def _route_path(template_path: str, values: dict[str, str]) -> str:
    path = template_path
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_two_keys_of_two_projects_cannot_see_change_or_delete_each_others_jobs_and_images_on_any_route(
    verifying_local_mode: LocalModeProcess,
    key_a: dict[str, str],
    key_b: dict[str, str],
    image_of_a: dict[str, str],
    source_file: str,
) -> None:
    # Given project A's finished import, as A sees it
    def a_view() -> tuple[Any, Any]:
        job = signed_call(verifying_local_mode, key_a, "GET", f"/v1/{PROJECT_A}/jobs/{image_of_a['job_id']}")
        images = signed_call(verifying_local_mode, key_a, "GET", "/v2/cloudimages")
        assert job.status == images.status == 200
        return job.body, images.body

    before = a_view()
    a_ids = (image_of_a["job_id"], image_of_a["image_id"])
    # When B calls every IMS route of the template with A's ids (its own project where a project goes)
    values = {"project_id": PROJECT_B, "job_id": image_of_a["job_id"], "image_id": image_of_a["image_id"]}
    stack = LocalStack(parameters={"Authentication": "AccessKey"})
    routes = [route for route in stack.api_routes() if not route.path.startswith("/diskport/")]
    assert len(routes) >= 4
    for route in routes:
        body: Any = None
        if route.method in ("POST", "PATCH", "PUT"):
            body = create_body(source_file, "data-of-b") if route.path == CREATE else {}
        query = [("id", image_of_a["image_id"])] if route.method == "GET" else None
        answer = signed_call(
            verifying_local_mode, key_b, route.method, _route_path(route.path, values), body, query=query
        )
        # Then nothing of A's comes back: a refusal, or an answer about B's own things only
        if 200 <= answer.status < 300:
            assert not any(identifier in json.dumps(answer.body) for identifier in a_ids), (route, answer)
        else:
            assert answer.status in (400, 404), (route, answer)
    # And A's job and images are as they were (B's own create made B's job, in B's project)
    assert a_view() == before
    listed_by_b = signed_call(verifying_local_mode, key_b, "GET", "/v2/cloudimages")
    assert all(image["owner"] == PROJECT_B for image in listed_by_b.body["images"])


def test_the_cli_signs_with_an_access_key_from_its_environment(
    verifying_local_mode: LocalModeProcess, key_a: dict[str, str], sample_disk: SampleDisk
) -> None:
    # Given the key in the environment, as a user of a verifying stack sets it
    signed_as_a = {
        "DISKPORT_ACCESS_KEY": key_a["access_key"],
        "DISKPORT_SECRET_KEY": key_a["secret_key"],
        "DISKPORT_PROJECT_ID": PROJECT_A,
    }
    cli = LocalModeProcess(
        verifying_local_mode.api_url,
        verifying_local_mode.aws_url,
        {**verifying_local_mode.environment, **signed_as_a},
        verifying_local_mode.log,
    )
    # When the CLI imports a file and lists the project's images
    imported = cli.cli("import", str(sample_disk.qcow2), "--name", "cli-signed", "--min-disk", "40", "--wait")
    assert imported.returncode == 0, imported.stderr
    image_id = json.loads(imported.stdout)["entities"]["image_id"]
    listed = cli.cli("images", "--id", image_id)
    # Then both were accepted as project A's
    assert listed.returncode == 0, listed.stderr
    assert [(image["id"], image["owner"]) for image in json.loads(listed.stdout)] == [(image_id, PROJECT_A)]
    # and without the key the same command is refused
    refused = verifying_local_mode.cli("images")
    assert refused.returncode == 1 and "APIGW.0301" in refused.stderr
