"""Shared fixtures: an emulated AWS account holding the stack `template.yaml` declares.

`stack` starts the emulator (`diskport_emulator.Emulator`) in this process: every table, bucket, queue,
function and the state machine from the template in moto, the process environment the functions would get,
Step Functions running the real ASL with the project's handlers called in-process, and IAM enforced, each
function acting as its own role.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
import pytest
from diskport.settings import get_settings
from diskport.stores import aws

from diskport_emulator import Emulator, InProcessLambdas, LocalStack, http_api_event
from tests.support.function_roles import acting_with

PROJECT_ID = "0123456789ab"

# Each test provisions its stack through fresh boto3 sessions (aws.forget_clients), and each fresh botocore session
# would load and parse the service models again: one loader for the run keeps them loaded once, which takes the
# CPU time of creating a client down about sevenfold (most of what a test's stack costs).
botocore.session.create_loader = functools.cache(botocore.session.create_loader)  # type: ignore[assignment]
OTHER_PROJECT_ID = "999999999999"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run the long variants (marked slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="a long variant: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _offline_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real AWS account: fake credentials, a fixed region, no profile."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "diskport")
    monkeypatch.setenv("POWERTOOLS_DEV", "0")
    get_settings.cache_clear()
    aws.forget_clients()


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Stack:
    """The provisioned local stack, with a way to call its API routes as a signed-in project."""

    local: LocalStack
    lambdas: InProcessLambdas

    def call_api(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw_body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        project_id: str = PROJECT_ID,
    ) -> ApiAnswer:
        for route in self.local.api_routes():
            parameters = route.match(method, path)
            if parameters is not None:
                break
        else:
            raise AssertionError(f"template.yaml declares no route for {method} {path}")
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event = http_api_event(
            route,
            path=path,
            path_parameters=parameters,
            query=query,
            raw_query="&".join(f"{key}={value}" for key, value in (query or {}).items()),
            headers={"content-type": "application/json"},
            body=payload,
            account_id=project_id,
        )
        result = self.lambdas.handler(route.function)(event, self.lambdas.context(route.function))
        return ApiAnswer(
            result["statusCode"], json.loads(result["body"]) if result.get("body") else None, result.get("headers", {})
        )

    def table(self, logical_id: str) -> Any:
        return boto3.resource("dynamodb").Table(self.local.physical_name(logical_id))

    def executions(self) -> list[dict[str, Any]]:
        arn = self.local.arn("ImportDataImageStateMachine")
        return list(boto3.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"])


@pytest.fixture
def stack_parameters() -> dict[str, str]:
    """The template parameters the stack is deployed with; a test or module overrides this fixture to change them."""
    return {}


@pytest.fixture
def local_stack(stack_parameters: dict[str, str]) -> LocalStack:
    """`template.yaml` resolved for the test's stack; a module may override this fixture to change the template."""
    return LocalStack(parameters=dict(stack_parameters))


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, local_stack: LocalStack) -> Iterator[Stack]:
    """The stack with executions recorded but not run: for tests of the API alone."""
    yield from _stack(monkeypatch, local_stack, run_executions=False)


@pytest.fixture
def running_stack(monkeypatch: pytest.MonkeyPatch, local_stack: LocalStack) -> Iterator[Stack]:
    """The stack with Step Functions running the real ASL and the handlers in-process."""
    yield from _stack(monkeypatch, local_stack, run_executions=True)


def _stack(monkeypatch: pytest.MonkeyPatch, local: LocalStack, *, run_executions: bool) -> Iterator[Stack]:
    """IAM is enforced: each function calls AWS as its own role, the test itself as the administrator `testing`."""
    with Emulator(local, run_executions=run_executions, act_as=acting_with) as emulator:
        for name, value in emulator.process_environment().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        aws.forget_clients()
        yield Stack(emulator.stack, emulator.functions)
