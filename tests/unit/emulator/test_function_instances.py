"""Function instances answer as the Lambda runtime does: results, errors in its shape, timeouts, own environments."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from diskport_emulator import LocalStack
from diskport_emulator.lambda_runtime.instances import FunctionInstances

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 2
    Environment:
      Variables:
        SHARED: everyone
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Environment:
        Variables:
          ONLY_ECHO: mine
  FailFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fail/
      Environment:
        Variables:
          ONLY_FAIL: theirs
"""

HANDLERS = {
    "echo": """
        import os, time
        import botocore.session
        def loader():
            return botocore.session.Session().get_component("data_loader")
        def lambda_handler(event, context):
            time.sleep(event.get("sleep", 0))
            return {
                "event": event,
                "function": context.function_name,
                "pid": os.getpid(),
                "environment": {name: os.environ.get(name) for name in ("SHARED", "ONLY_ECHO", "ONLY_FAIL")},
                "signs_with_crt": __import__("botocore.compat").compat.HAS_CRT,
                "sessions_share_sdk_data": (lambda first, second: first is second)(loader(), loader()),
            }
    """,
    "fail": """
        class ImageUnreadableError(Exception):
            pass
        def lambda_handler(event, context):
            raise ImageUnreadableError("the header is not qcow2")
    """,
}


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[FunctionInstances]:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for folder, code in HANDLERS.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "app.py").write_text(textwrap.dedent(code))
    functions = FunctionInstances(LocalStack(template_path=tmp_path / "template.yaml"), concurrency=2)
    yield functions
    functions.stop()


def test_a_result_comes_back_and_the_instance_stays_warm(instances: FunctionInstances) -> None:
    first, errored = instances.invoke("EchoFunction", {"n": 1})
    second, _ = instances.invoke("diskport-EchoFunction", {"n": 2})
    assert not errored
    assert json.loads(first)["event"] == {"n": 1}
    assert json.loads(first)["function"] == "diskport-EchoFunction"
    assert json.loads(first)["pid"] == json.loads(second)["pid"]


def test_each_function_sees_its_own_environment_and_not_another_functions(instances: FunctionInstances) -> None:
    answer, _ = instances.invoke("EchoFunction", {})
    assert json.loads(answer)["environment"] == {"SHARED": "everyone", "ONLY_ECHO": "mine", "ONLY_FAIL": None}


def test_a_function_signs_its_aws_requests_in_python_as_on_lambda_where_boto3_has_no_crt(
    instances: FunctionInstances,
) -> None:
    answer, _ = instances.invoke("EchoFunction", {})
    assert json.loads(answer)["signs_with_crt"] is False


def test_a_functions_sdk_sessions_share_the_sdk_data_they_have_read(instances: FunctionInstances) -> None:
    answer, _ = instances.invoke("EchoFunction", {})
    assert json.loads(answer)["sessions_share_sdk_data"] is True


def test_an_exception_comes_back_in_the_lambda_runtimes_shape_flagged_as_a_function_error(
    instances: FunctionInstances,
) -> None:
    answer, errored = instances.invoke("FailFunction", {})
    payload = json.loads(answer)
    assert errored
    assert (payload["errorType"], payload["errorMessage"]) == ("ImageUnreadableError", "the header is not qcow2")
    assert any("lambda_handler" in line for line in payload["stackTrace"])


def test_an_invocation_that_overruns_the_timeout_is_ended_as_lambda_ends_it(instances: FunctionInstances) -> None:
    answer, errored = instances.invoke("EchoFunction", {"sleep": 5})
    assert errored
    assert json.loads(answer)["errorType"] == "Sandbox.Timedout"
    assert not json.loads(instances.invoke("EchoFunction", {})[0]).get("errorType")  # a fresh instance answers
