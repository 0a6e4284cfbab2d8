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

from diskport_local.template import PROJECT_ROOT, LocalStack, load_template

# sam package would upload these local folders; the transform wants S3 locations.
LOCAL_PATH_PROPERTIES = ("CodeUri", "ContentUri")
# Checks that do not apply to this stack, and why. ES1001 wants an on-failure destination on every event source
# mapping; Lambda supports those for stream sources, not for SQS, whose failures the queue's redrive policy keeps
# (UploadQueue -> UploadDeadLetterQueue, with an alarm).
IGNORED_CHECKS = ("ES1001",)
ASL_VALIDATOR = PROJECT_ROOT / ".ci" / "node_modules" / ".bin" / "asl-validator"


class _NoManagedPolicies:
    """SAM asks IAM for managed policy ARNs by name; the template names none, so offline nothing is needed."""

    def load(self) -> dict[str, str]:
        return {}


def transformed_template() -> dict[str, Any]:
    """The template as CloudFormation receives it from `sam deploy`, with each state machine's ASL inlined."""
    template = copy.deepcopy(load_template())
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

    template_path = arguments.out / "template.json"
    template_path.write_text(json.dumps(transformed_template(), indent=1))
    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")  # the one installed beside this Python (dev extras)
    print(f"cfn-lint (serverless rules) on the SAM-transformed template: {template_path}", flush=True)
    failed = subprocess.run(
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
