"""env.json lets `sam local` run the functions against local mode's AWS emulator, and never drifts."""

from __future__ import annotations

import json

from diskport_emulator.template import PROJECT_ROOT, LocalStack
from diskport_local.sam_env import DOCKER_HOST_AWS_ENDPOINT, env_json, sam_local_environment
from diskport_local.server import DEFAULT_PROJECT_ID


def test_the_committed_env_json_is_what_the_template_gives_today() -> None:
    committed = (PROJECT_ROOT / "env.json").read_text()
    assert committed == env_json(LocalStack()), "regenerate it: diskport sam-env > env.json"


def test_every_function_points_at_the_emulator_as_the_local_project() -> None:
    environment = sam_local_environment(LocalStack())
    assert set(environment) == set(LocalStack().resources_of_type("AWS::Serverless::Function"))
    for variables in environment.values():
        assert variables["AWS_ENDPOINT_URL"] == DOCKER_HOST_AWS_ENDPOINT
        assert variables["PROJECT_ID_SOURCE"] == "local"
        assert variables["JOBS_TABLE"] == LocalStack().physical_name("JobsTable")
    assert environment["UploadTriggerFunction"]["UPLOAD_PROJECT_ID"] == DEFAULT_PROJECT_ID


def test_only_variables_the_template_declares_are_given_since_sam_local_ignores_others() -> None:
    stack = LocalStack()
    for function, variables in json.loads(env_json(stack)).items():
        assert set(variables) == set(stack.function_environment(function))
