"""With Authentication=AccessKey, each key's project is the tenant: its own jobs, flow control and image quota.

The stack is provisioned from the template with that parameter; requests are signed by the Huawei Cloud SDK's
signer and handed to the functions as API Gateway's HTTP API would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from diskport.settings import get_settings
from diskport.stores import aws
from diskport.stores.access_keys import AccessKeyStore, CreatedAccessKey, forget_cached_key
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from diskport_emulator import Emulator, InProcessLambdas, LocalStack, http_api_event
from tests.support.function_roles import acting_with

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:huaweicloudsdkcore.signer.signer")

CREATE = "/v1/cloudimages/dataimages/action"
REQUEST = {"name": "data1", "image_url": "image-test:data1.qcow2", "min_disk": 40}


@dataclass
class KeyedStack:
    local: LocalStack
    lambdas: InProcessLambdas

    def call(self, key: CreatedAccessKey, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = SdkRequest(
            method=method,
            schema="https",
            host="abc123.execute-api.us-east-1.amazonaws.com",
            resource_path=path,
            query_params=[],
            header_params={"Content-Type": "application/json", "X-Project-Id": key.project_id},
            body=data,
        )
        Signer(BasicCredentials(key.access_key, key.secret_key, key.project_id)).sign(request)
        for route in self.local.api_routes():
            parameters = route.match(method, path)
            if parameters is not None:
                break
        else:
            raise AssertionError(f"no route {method} {path}")
        event = http_api_event(
            route,
            path=path,
            path_parameters=parameters,
            headers={name: str(value) for name, value in request.header_params.items()},
            body=data,
        )
        result = self.lambdas.handler(route.function)(event, self.lambdas.context(route.function))
        return int(result["statusCode"]), json.loads(result["body"]) if result.get("body") else None

    def jobs(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.local.physical_name("JobsTable"))
        return list(table.scan()["Items"])


@pytest.fixture
def keyed_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyedStack]:
    local = LocalStack(parameters={"Authentication": "AccessKey"})
    with Emulator(local, run_executions=False, act_as=acting_with) as emulator:
        for name, value in emulator.process_environment().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        aws.forget_clients()
        forget_cached_key()
        yield KeyedStack(local, emulator.functions)
        forget_cached_key()


def test_each_keys_project_has_its_own_flow_control(keyed_stack: KeyedStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two keys of two projects, and one import at a time per project
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "1")
    get_settings.cache_clear()
    key_a, key_b = AccessKeyStore().create("project-a"), AccessKeyStore().create("project-b")
    # When A starts an import, then a second one, and B starts one
    first = keyed_stack.call(key_a, "POST", CREATE, REQUEST)
    second = keyed_stack.call(key_a, "POST", CREATE, REQUEST)
    of_b = keyed_stack.call(key_b, "POST", CREATE, REQUEST)
    # Then A's second waits on A's limit, B's is not held back by A's import
    assert first[0] == 200 and of_b[0] == 200
    assert second[0] == 400 and second[1]["error"]["code"] == "IMG.0194"  # IMS answers flow control with 400
    # and the jobs belong to the keys' projects
    assert sorted(job["project_id"] for job in keyed_stack.jobs()) == ["project-a", "project-b"]
    # and each project reads only its own job
    assert keyed_stack.call(key_a, "GET", f"/v1/project-a/jobs/{first[1]['job_id']}")[0] == 200
    assert keyed_stack.call(key_b, "GET", f"/v1/cloudimages/job/{first[1]['job_id']}")[0] == 404
    assert keyed_stack.call(key_b, "GET", f"/v1/project-b/jobs/{first[1]['job_id']}")[0] == 404


def test_a_key_signs_for_its_project_only(keyed_stack: KeyedStack) -> None:
    key_a = AccessKeyStore().create("project-a")
    job_id = keyed_stack.call(key_a, "POST", CREATE, REQUEST)[1]["job_id"]
    status, body = keyed_stack.call(key_a, "GET", f"/v1/project-b/jobs/{job_id}")
    assert status == 401 and body["error"]["code"] == "APIGW.0301"


def test_the_operator_routes_need_iam_credentials_not_an_access_key(keyed_stack: KeyedStack) -> None:
    # Deployed (OPERATOR_AUTH=iam, the default), the key routes answer only IAM-signed callers
    key_a = AccessKeyStore().create("project-a")
    status, body = keyed_stack.call(key_a, "GET", "/diskport/access-keys")
    assert status == 401
    assert key_a.secret_key not in json.dumps(body)
    route = next(
        route
        for route in keyed_stack.local.api_routes()
        if (route.method, route.path) == ("GET", "/diskport/access-keys")
    )
    signed_in = http_api_event(route, path="/diskport/access-keys", account_id="123456789012")
    handler = keyed_stack.lambdas.handler(route.function)
    result = handler(signed_in, keyed_stack.lambdas.context(route.function))
    assert result["statusCode"] == 200
    listed = json.loads(result["body"])["access_keys"]
    assert [(key["access_key"], key["project_id"]) for key in listed] == [(key_a.access_key, "project-a")]
    assert key_a.secret_key not in result["body"]
