"""`env.json` for `sam local start-api` / `sam local invoke`: the functions in Docker, AWS in local mode.

sam local only overrides variables the template declares, so each function gets its own declared
variables resolved to local mode's names, with AWS_ENDPOINT_URL pointing at local mode's AWS emulator as
seen from inside a container. The committed env.json is this function's output (a test keeps them equal).
"""

from __future__ import annotations

import json

from diskport_emulator import LocalStack
from diskport_local.server import DEFAULT_AWS_PORT, DEFAULT_PROJECT_ID

# How a container started by sam local reaches the host; Linux needs Docker's host-gateway mapping for it.
DOCKER_HOST_AWS_ENDPOINT = f"http://host.docker.internal:{DEFAULT_AWS_PORT}"


def sam_local_environment(
    stack: LocalStack, aws_endpoint: str = DOCKER_HOST_AWS_ENDPOINT, project_id: str = DEFAULT_PROJECT_ID
) -> dict[str, dict[str, str]]:
    """Each function's variables, by logical id, as env.json gives them to sam local."""
    local_overrides = {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "PROJECT_ID_SOURCE": "local",
        "LOCAL_PROJECT_ID": project_id,
        "UPLOAD_PROJECT_ID": project_id,
    }
    environment = {}
    for logical_id in sorted(stack.resources_of_type("AWS::Serverless::Function")):
        declared = stack.function_environment(logical_id)
        environment[logical_id] = {name: local_overrides.get(name, value) for name, value in sorted(declared.items())}
    return environment


def env_json(stack: LocalStack, aws_endpoint: str = DOCKER_HOST_AWS_ENDPOINT) -> str:
    return json.dumps(sam_local_environment(stack, aws_endpoint), indent=2) + "\n"
