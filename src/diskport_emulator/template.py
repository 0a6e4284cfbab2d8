"""Read `template.yaml` and resolve it for a local stack: names, ARNs, environments and resources.

The CloudFormation intrinsics the template uses (Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Split, Fn::Select, Fn::If,
Fn::Not, Fn::Equals, Fn::FindInMap) are resolved against local names, so tests and local mode create exactly the
tables, buckets, queues, functions and state machine the template declares.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"
# The id part of the local stack's AWS::StackId, which names the state machine and the watched bucket when deployed.
LOCAL_STACK_GUID = "00000000-0000-4000-8000-000000000000"


class _CloudFormationLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML with CloudFormation's short tags (`!Ref X` → `{"Ref": "X"}`, `!Sub s` → `{"Fn::Sub": s}`)."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


# The ARN of each kind of resource the template declares, from its physical name.
_ARN_FORMATS = {
    "AWS::Serverless::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::Serverless::LayerVersion": "arn:aws:lambda:{region}:{account}:layer:{name}:1",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::KMS::Key": "arn:aws:kms:{region}:{account}:key/{name}",
}


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    # _CloudFormationLoader is a SafeLoader (libyaml's when installed, ten times faster): no Python objects are built.
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormationLoader)
    return template


@dataclass
class LocalStack:
    """`template.yaml` resolved for one local stack: every resource gets a local physical name."""

    stack_name: str = "diskport"
    parameters: dict[str, str] = field(default_factory=dict)
    account_id: str = LOCAL_ACCOUNT_ID
    region: str = LOCAL_REGION
    template_path: Path = TEMPLATE_PATH
    # ARNs the emulator chose itself when it made a resource (a KMS key's id is random), by logical id.
    provisioned_arns: dict[str, str] = field(default_factory=dict)

    @cached_property
    def template(self) -> dict[str, Any]:
        return load_template(self.template_path)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this stack has: those whose Condition is false under its parameters are left out."""
        return {
            name: spec
            for name, spec in self.template["Resources"].items()
            if "Condition" not in spec or self.condition(spec["Condition"])
        }

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: spec for name, spec in self.resources.items() if spec["Type"] == resource_type}

    # ------------------------------------------------------------------ names
    def physical_name(self, logical_id: str) -> str:
        """A local resource's name: explicit `Name` properties win, otherwise stack-logical id."""
        spec = self.resources[logical_id]
        explicit = spec.get("Properties", {}).get("Name")
        if explicit is not None:
            return str(self.resolve(explicit))
        name = f"{self.stack_name}-{logical_id}"
        if spec["Type"] == "AWS::S3::Bucket":
            return re.sub(r"[^a-z0-9-]", "-", name.lower())
        return name

    def arn(self, logical_id: str) -> str:
        if logical_id in self.provisioned_arns:
            return self.provisioned_arns[logical_id]
        kind = self.resources[logical_id]["Type"]
        template = _ARN_FORMATS.get(kind, "arn:aws:cloudformation:{region}:{account}:{kind}/{name}")
        return template.format(
            region=self.region, account=self.account_id, kind=kind, name=self.physical_name(logical_id)
        )

    def queue_url(self, logical_id: str, endpoint: str) -> str:
        return f"{endpoint}/{self.account_id}/{self.physical_name(logical_id)}"

    # ------------------------------------------------------------------ intrinsics
    def parameter(self, name: str) -> Any:
        spec = self.template.get("Parameters", {}).get(name)
        if spec is None:
            raise KeyError(f"template.yaml has no parameter {name}")
        value = self.parameters.get(name, spec.get("Default", ""))
        if spec.get("Type") == "CommaDelimitedList":
            # A list, as CloudFormation hands it to intrinsics, whether given as one or as the CLI gives it: "a,b".
            return value if isinstance(value, list) else (str(value).split(",") if value != "" else [""])
        return value if name in self.parameters else str(value)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/{LOCAL_STACK_GUID}",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        kind = self.resources[name]["Type"]
        if kind in ("AWS::Serverless::StateMachine", "AWS::Serverless::LayerVersion"):
            return self.arn(name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{self.physical_name(name)}"
        return self.physical_name(name)

    def _get_att(self, name: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(name)
        if attribute == "QueueName":
            return self.physical_name(name)
        raise KeyError(f"Fn::GetAtt {name}.{attribute} is not resolved locally")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        """The template value with every intrinsic function replaced by its local result."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(inner) for key, inner in value.items()}
        ((key, argument),) = value.items()
        if key == "Ref":
            return self._ref(argument)
        if key == "Fn::GetAtt":
            return self._get_att(*argument)
        if key == "Fn::Sub":
            template_text, variables = (argument, {}) if isinstance(argument, str) else argument
            variables = {name: self.resolve(inner) for name, inner in variables.items()}
            return re.sub(r"\$\{([^}]+)\}", lambda match: self._substitute(match.group(1), variables), template_text)
        if key == "Fn::Join":
            separator, items = argument
            return str(self.resolve(separator)).join(str(item) for item in self.resolve(items))
        if key == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(str(self.resolve(separator)))
        if key == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::If":
            condition_name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition_name) else when_false)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Fn::Equals":
            left, right = self.resolve(argument)
            return left == right
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::FindInMap":
            map_name, top_key, second_key = self.resolve(argument[:3])
            return self.template["Mappings"][map_name][top_key][second_key]
        return {key: self.resolve(argument)}

    def _substitute(self, expression: str, variables: dict[str, Any]) -> str:
        if expression in variables:
            return str(variables[expression])
        if "." in expression and expression.split(".", 1)[0] in self.resources:
            return self._get_att(*expression.split(".", 1))
        return str(self._ref(expression))

    # ------------------------------------------------------------------ functions
    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment: the template's Globals, then its own variables."""
        global_variables = self.template.get("Globals", {}).get("Function", {}).get("Environment", {})
        own_variables = self.resources[logical_id].get("Properties", {}).get("Environment", {})
        merged = {**global_variables.get("Variables", {}), **own_variables.get("Variables", {})}
        return {name: str(self.resolve(value)) for name, value in merged.items()}

    def function_property(self, logical_id: str, name: str) -> Any:
        own = self.resources[logical_id].get("Properties", {})
        if name in own:
            return self.resolve(own[name])
        return self.resolve(self.template.get("Globals", {}).get("Function", {}).get(name))

    def state_machine_definition(self, logical_id: str) -> str:
        """The ASL of a state machine, with its DefinitionSubstitutions filled in."""
        properties = self.resources[logical_id]["Properties"]
        definition: str = (self.template_path.parent / str(properties["DefinitionUri"])).read_text()
        substitutions = {name: self.resolve(value) for name, value in properties["DefinitionSubstitutions"].items()}
        for name, value in substitutions.items():
            definition = definition.replace("${" + name + "}", str(value))
        json.loads(definition)  # a substitution must not break the JSON
        return definition

    def api_routes(self) -> list[ApiRoute]:
        """Every HTTP route the template declares, with the function that serves it."""
        routes = []
        for logical_id, spec in self.resources_of_type("AWS::Serverless::Function").items():
            for event_name, event in spec.get("Properties", {}).get("Events", {}).items():
                if event["Type"] in ("HttpApi", "Api"):
                    properties = event["Properties"]
                    routes.append(ApiRoute(properties["Method"].upper(), properties["Path"], logical_id, event_name))
        return routes


class ConflictingEnvironmentError(RuntimeError):
    """Two functions set one variable differently, which one process cannot honour."""


def function_environment_union(stack: LocalStack) -> dict[str, str]:
    """Every function's environment, merged: local mode runs all the handlers in one process."""
    merged: dict[str, str] = {}
    owners: dict[str, str] = {}
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        for name, value in stack.function_environment(logical_id).items():
            if name in merged and merged[name] != value:
                raise ConflictingEnvironmentError(
                    f"{owners[name]} and {logical_id} set {name} differently ({merged[name]!r}, {value!r}); "
                    "one process running every function needs one value."
                )
            merged[name], owners[name] = value, logical_id
    return merged


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    function: str
    event_name: str

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when the request matches this route, else None."""
        if method.upper() != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None
