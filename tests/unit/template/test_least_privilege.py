"""Least privilege, checked on the IAM the template really deploys (after the SAM transform).

Every function and the state machine get only the actions they call, on the resources they touch: no
wildcard action anywhere, and a `*` resource only for the few actions AWS does not scope by resource.
A template change that grows a wildcard fails this test, and so the build.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from diskport_local.template import LocalStack, load_template

# Actions that accept no resource narrower than "*" (AWS service authorization reference).
ACTIONS_WITHOUT_RESOURCE_SCOPE = {"ec2:DescribeSnapshots", "ec2:GetEbsEncryptionByDefault", "ec2:GetEbsDefaultKmsKeyId"}
# AWS-managed policies SAM attaches: logs and traces of the function itself, and the SQS event source.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def deployed_roles(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(load_template())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for local_path in ("CodeUri", "DefinitionUri", "ContentUri"):
            if local_path in properties:  # sam package would upload these; the transform wants S3 URIs
                properties[local_path] = "s3://artifacts/placeholder.zip"
    transformed = transform(template, {}, _NoManagedPolicies())
    return {name: spec for name, spec in transformed["Resources"].items() if spec["Type"] == "AWS::IAM::Role"}


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_and_the_state_machine_have_a_role(deployed_roles: dict[str, Any]) -> None:
    template = load_template()
    expected = {
        f"{name}Role"
        for name, spec in template["Resources"].items()
        if spec["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
    }
    assert expected <= set(deployed_roles)


def test_no_statement_allows_a_wildcard_action(deployed_roles: dict[str, Any]) -> None:
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement, role_name
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{role_name} allows {action}"


def test_a_star_resource_is_only_granted_to_actions_aws_cannot_scope(deployed_roles: dict[str, Any]) -> None:
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            resources = as_list(statement["Resource"])
            if "*" in resources:
                assert set(as_list(statement["Action"])) <= ACTIONS_WITHOUT_RESOURCE_SCOPE, role_name


def test_only_known_managed_policies_are_attached(deployed_roles: dict[str, Any]) -> None:
    for role_name, role in deployed_roles.items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES, role_name


@pytest.mark.parametrize("source_buckets", [[""], ["images-a"], ["images-a", "images-b"]])
def test_functions_read_only_the_buckets_named_by_the_source_buckets_parameter(
    deployed_roles: dict[str, Any], source_buckets: list[str]
) -> None:
    # Given a stack deployed with these SourceBuckets
    stack = LocalStack(parameters={"SourceBuckets": source_buckets})  # type: ignore[dict-item]
    own_buckets = {stack.physical_name(name) for name in stack.resources_of_type("AWS::S3::Bucket")}
    allowed = own_buckets | {name for name in source_buckets if name}

    # Then every S3 resource in every policy names one of those buckets exactly
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            for resource in as_list(stack.resolve(statement["Resource"])):
                # The source buckets' ARNs carry a wildcard partition (Fn::Join takes no Sub delimiter): both forms.
                if re.match(r"arn:(aws|\*):s3:::", resource):
                    bucket = resource.split(":::", 1)[1].split("/", 1)[0]
                    assert bucket in allowed, f"{role_name} reaches bucket '{bucket}' ({resource})"


def test_only_the_create_paths_may_start_imports(deployed_roles: dict[str, Any]) -> None:
    starters = {
        role_name
        for role_name, role in deployed_roles.items()
        for statement in statements(role)
        if "states:StartExecution" in as_list(statement["Action"])
    }
    # the state machine starts its own Distributed Map children
    assert starters == {"CreateImageJobFunctionRole", "UploadTriggerFunctionRole", "ImportDataImageStateMachineRole"}


# Actions that change what a bucket is (its expiry rules, policy, ACLs, encryption) rather than the objects in it.
BUCKET_CONFIGURATION_ACTIONS = {
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketVersioning",
    "s3:DeleteBucket",
}


def test_no_role_may_change_a_buckets_configuration_or_acls(deployed_roles: dict[str, Any]) -> None:
    # SAM's S3CrudPolicy grants these: a function could lift the work bucket's expiry of work files
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            granted = set(as_list(statement["Action"])) & BUCKET_CONFIGURATION_ACTIONS
            assert not granted, f"{role_name} may {sorted(granted)}"


def test_work_files_are_reached_only_under_the_imports_prefix(deployed_roles: dict[str, Any]) -> None:
    stack = LocalStack()
    work_bucket = stack.physical_name("WorkBucket")
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            for resource in as_list(stack.resolve(statement["Resource"])):
                if resource.startswith(f"arn:aws:s3:::{work_bucket}/"):
                    assert resource == f"arn:aws:s3:::{work_bucket}/imports/*", f"{role_name}: {resource}"


# What the data-access modules call: jobs.py and images.py get, put, update and query; Powertools' idempotency
# layer also deletes its own records. No role may scan, batch-write or delete jobs and images.
TABLE_ITEM_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
IDEMPOTENCY_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def test_dynamodb_grants_are_the_item_operations_the_code_calls(deployed_roles: dict[str, Any]) -> None:
    stack = LocalStack()
    idempotency_table = stack.arn("IdempotencyTable")
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            actions = {action for action in as_list(statement["Action"]) if action.startswith("dynamodb:")}
            if not actions:
                continue
            resources = [str(resource) for resource in as_list(stack.resolve(statement["Resource"]))]
            allowed = IDEMPOTENCY_ACTIONS if resources == [idempotency_table] else TABLE_ITEM_ACTIONS
            assert actions <= allowed, f"{role_name} is granted {sorted(actions - allowed)} on {resources}"
            assert all(resource.startswith("arn:aws:dynamodb:") for resource in resources), role_name
