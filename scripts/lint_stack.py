"""Lint what AWS receives: the SAM-transformed template (cfn-lint with the serverless rules) and the state machine
definition after its DefinitionSubstitutions (asl-validator), with validators this project did not write.

    python scripts/lint_stack.py [--out DIR]

`sam validate --lint` checks the template as written; several mistakes only show once SAM has expanded it (an
intrinsic function where CloudFormation wants a literal, a policy SAM generates), and the ASL file only means
something once the substitutions are in. Exits non-zero when either validator finds a fault.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform

from diskport_emulator.template import PROJECT_ROOT, LocalStack, load_template

# sam package would upload these local folders; the transform wants S3 locations.
LOCAL_PATH_PROPERTIES = ("CodeUri", "ContentUri")
# Checks that do not apply to this stack, and why. ES1001 wants an on-failure destination on every event source
# mapping; Lambda supports those for stream sources, not for SQS, whose failures the queue's redrive policy keeps
# (UploadQueue -> UploadDeadLetterQueue, with an alarm).
# W1028 flags the false branch of an Fn::If that SAM writes into the API's OpenAPI body for each route of a
# function that has a Condition (ManageAccessKeysFunction), inside a resource bearing that same condition: SAM's
# output, not this template's.
IGNORED_CHECKS = ("ES1001", "W1028")
ASL_VALIDATOR = PROJECT_ROOT / ".ci" / "node_modules" / ".bin" / "asl-validator"


class _NoManagedPolicies:
    """SAM asks IAM for managed policy ARNs by name; the template names none, so offline nothing is needed."""

    def load(self) -> dict[str, str]:
        return {}


def with_maps_found(node: Any, template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """`node` with each Fn::FindInMap over literals and parameters resolved, as AWS::LanguageExtensions does.

    The template lists that transform before SAM's, so SAM sees the looked-up literal (DefaultAuthorizer must be
    one); a lint that skipped this step would lint a template CloudFormation never hands SAM.
    """
    if isinstance(node, list):
        return [with_maps_found(item, template, parameters) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::FindInMap"}:
        keys = [with_maps_found(key, template, parameters) for key in node["Fn::FindInMap"]]
        keys = [
            parameters.get(key["Ref"], key) if isinstance(key, dict) and set(key) == {"Ref"} else key for key in keys
        ]
        if all(isinstance(key, str) for key in keys):
            return template["Mappings"][keys[0]][keys[1]][keys[2]]
    return {key: with_maps_found(value, template, parameters) for key, value in node.items()}


def mapped_parameters(node: Any) -> set[str]:
    """The parameters a Fn::FindInMap looks a value up by."""
    if isinstance(node, list):
        return set().union(*(mapped_parameters(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set().union(*(mapped_parameters(value) for value in node.values()))
    for key in node.get("Fn::FindInMap", []) if isinstance(node.get("Fn::FindInMap"), list) else []:
        if isinstance(key, dict) and set(key) == {"Ref"}:
            found.add(str(key["Ref"]))
    return found


def parameter_choices() -> list[dict[str, str]]:
    """Every combination of the values of the parameters mappings are keyed by: each gives another stack."""
    template = load_template()
    choices: list[dict[str, str]] = [{}]
    for name in sorted(
        mapped_parameters(template.get("Resources", {})) | mapped_parameters(template.get("Globals", {}))
    ):
        values = template["Parameters"][name]["AllowedValues"]
        choices = [{**choice, name: str(value)} for choice in choices for value in values]
    return choices


def transformed_template(parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The template as CloudFormation receives it from `sam deploy`, with each state machine's ASL inlined."""
    template = copy.deepcopy(load_template())
    defaults = {name: str(value.get("Default", "")) for name, value in template.get("Parameters", {}).items()}
    template = with_maps_found(template, template, {**defaults, **(parameters or {})})
    template.pop("Mappings", None)  # every lookup is resolved: CloudFormation never reads them
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for local_path in LOCAL_PATH_PROPERTIES:
            if local_path in properties:
                properties[local_path] = "s3://artifacts/code.zip"
        if "DefinitionUri" in properties:
            # Inlined (SAM turns it into DefinitionString), so the linter sees the definition too.
            properties["Definition"] = json.loads((PROJECT_ROOT / properties.pop("DefinitionUri")).read_text())
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return dict(transform(template, {}, _NoManagedPolicies()))


def substituted_definitions() -> dict[str, str]:
    """Each state machine's ASL with its DefinitionSubstitutions filled in (local names and ARNs)."""
    stack = LocalStack()
    return {
        logical_id: stack.state_machine_definition(logical_id)
        for logical_id in stack.resources_of_type("AWS::Serverless::StateMachine")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".aws-sam" / "lint")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)

    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")  # the one installed beside this Python (dev extras)
    failed = 0
    for parameters in parameter_choices():
        named = "-".join(f"{name}={value}" for name, value in parameters.items()) or "defaults"
        template_path = arguments.out / f"template-{named}.json"
        template_path.write_text(json.dumps(transformed_template(parameters), indent=1))
        print(f"cfn-lint (serverless rules) on the SAM-transformed template, {named}: {template_path}", flush=True)
        failed |= subprocess.run(
            [
                cfn_lint,
                *("--append-rules", "cfn_lint_serverless.rules"),
                *("--ignore-checks", *IGNORED_CHECKS),
                *("--", str(template_path)),
            ]
        ).returncode

    if not ASL_VALIDATOR.exists():
        print(f"{ASL_VALIDATOR} is missing: `make lint` installs it (npm ci in .ci/)", file=sys.stderr)
        return 1
    for logical_id, definition in substituted_definitions().items():
        definition_path = arguments.out / f"{logical_id}.asl.json"
        definition_path.write_text(definition)
        print(f"asl-validator on {logical_id} after substitution: {definition_path}", flush=True)
        failed |= subprocess.run([str(ASL_VALIDATOR), "--json-path", str(definition_path)]).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
