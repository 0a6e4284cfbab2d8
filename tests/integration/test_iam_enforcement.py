"""IAM is enforced in the pipeline tests: each function calls AWS as its own role, with the template's policies.

The whole in-process suite runs so (tests/conftest.py); here a policy lacking an action the code calls shows
that the enforcement bites: the step that calls it fails, as it would on AWS, and the import fails cleanly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from diskport_emulator import LocalStack
from tests.support.function_roles import without_action

MISSING_ACTION = "ebs:CompleteSnapshot"


@pytest.fixture
def local_stack() -> LocalStack:
    """The template, with the two roles that complete a snapshot (the last chunk's worker, and Register after it)
    lacking the one action that does."""
    local = without_action(LocalStack(), "ConvertChunkFunction", MISSING_ACTION)
    return without_action(local, "RegisterImageFunction", MISSING_ACTION)


def test_a_step_whose_role_lacks_an_action_it_calls_fails_and_the_import_fails_cleanly(
    importer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Convert's and Register's roles without ebs:CompleteSnapshot, and a record of each function's failed
    # invocations
    lambdas = importer.stack.lambdas
    invoke, failures = lambdas.invoke, []

    def invoke_and_note_failures(function: str, event: Any) -> tuple[str, bool]:
        payload, failed = invoke(function, event)
        if failed:
            failures.append((lambdas.logical_id(function), json.loads(payload)))
        return payload, failed

    monkeypatch.setattr(lambdas, "invoke", invoke_and_note_failures)

    # When a disk is imported
    job = importer.import_file(b"\x01" * 700_416, "disk.raw")

    # Then the steps before Register ran as their own roles, which may do what they did
    ran = {invocation.function for invocation in lambdas.invocations}
    assert {"FetchSourceFunction", "ConvertChunkFunction", "RegisterImageFunction"} <= ran
    # And Register, and only Register, failed: IAM refused its role the action it lacks (the last chunk's worker,
    # refused it too, leaves finishing the import to Register)
    assert {function for function, _ in failures} == {"RegisterImageFunction"}, failures
    refusals = [json.dumps(answer) for _, answer in failures]
    assert all("AccessDenied" in refusal and MISSING_ACTION in refusal for refusal in refusals), refusals
    assert all("assumed-role/diskport-RegisterImageFunction-role" in refusal for refusal in refusals), refusals
    # And the import failed cleanly: the job says so, no image is active, no work file is left
    assert job["status"] == "FAIL", job
    assert importer.images(status="active") == []
    assert importer.work_files() == []
