"""Least privilege, checked on the IAM the template really deploys (after the SAM transform).

Every function and the state machine get only the actions they call, on the resources they touch: no
wildcard action anywhere, and a `*` resource only for the few actions AWS does not scope by resource.
A template change that grows a wildcard fails this test, and so the build.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from diskport_emulator.template import LocalStack, load_template

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


AUTHENTICATION_MODES = ["AwsIam", "AccessKey"]


def with_language_extensions(value: Any, stack: LocalStack) -> Any:
    """The template as AWS::LanguageExtensions hands it to SAM: each Fn::FindInMap replaced by its value."""
    if isinstance(value, list):
        return [with_language_extensions(item, stack) for item in value]
    if isinstance(value, dict):
        if list(value) == ["Fn::FindInMap"]:
            return stack.resolve(value)
        return {key: with_language_extensions(inner, stack) for key, inner in value.items()}
    return value


def chosen(value: Any, stack: LocalStack) -> Any:
    """A value with CloudFormation's Fn::If decided under the stack's parameters (AWS::NoValue dropped)."""
    if isinstance(value, list):
        return [chosen(item, stack) for item in value if chosen(item, stack) is not None]
    if isinstance(value, dict):
        if list(value) == ["Fn::If"]:
            condition, when_true, when_false = value["Fn::If"]
            return chosen(when_true if stack.condition(condition) else when_false, stack)
        if value == {"Ref": "AWS::NoValue"}:
            return None
        return {key: chosen(inner, stack) for key, inner in value.items()}
    return value


@pytest.fixture(scope="module", params=AUTHENTICATION_MODES)
def authentication(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def deployed_roles(monkeypatch_module: pytest.MonkeyPatch, authentication: str) -> dict[str, dict[str, Any]]:
    """The IAM roles of a stack deployed with this Authentication, conditions decided."""
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    stack = LocalStack(parameters={"Authentication": authentication})
    template = with_language_extensions(copy.deepcopy(load_template()), stack)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for local_path in ("CodeUri", "DefinitionUri", "ContentUri"):
            if local_path in properties:  # sam package would upload these; the transform wants S3 URIs
                properties[local_path] = "s3://artifacts/placeholder.zip"
    transformed = transform(template, {"Authentication": authentication}, _NoManagedPolicies())
    return {
        name: chosen(spec, stack)
        for name, spec in transformed["Resources"].items()
        if spec["Type"] == "AWS::IAM::Role" and ("Condition" not in spec or stack.condition(spec["Condition"]))
    }


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


def test_every_function_and_the_state_machine_have_a_role(deployed_roles: dict[str, Any], authentication: str) -> None:
    stack = LocalStack(parameters={"Authentication": authentication})
    expected = {
        f"{name}Role"
        for name, spec in stack.resources.items()
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
    deployed_roles: dict[str, Any], source_buckets: list[str], authentication: str
) -> None:
    # Given a stack deployed with these SourceBuckets
    stack = LocalStack(parameters={"SourceBuckets": source_buckets, "Authentication": authentication})  # type: ignore[dict-item]
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


def test_work_files_are_reached_only_under_the_imports_prefix(
    deployed_roles: dict[str, Any], authentication: str
) -> None:
    stack = LocalStack(parameters={"Authentication": authentication})
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
# The access keys: the verifier reads a key and notes its last use; the operator's function creates, lists (a Scan
# of a small table) and revokes keys. Nobody deletes one: a revoked key stays, for the record.
ACCESS_KEY_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"}


def test_dynamodb_grants_are_the_item_operations_the_code_calls(
    deployed_roles: dict[str, Any], authentication: str
) -> None:
    stack = LocalStack(parameters={"Authentication": authentication})
    idempotency_table = stack.arn("IdempotencyTable")
    access_keys_table = stack.arn("AccessKeysTable") if stack.condition("UsesAccessKeys") else None
    for role_name, role in deployed_roles.items():
        for statement in statements(role):
            actions = {action for action in as_list(statement["Action"]) if action.startswith("dynamodb:")}
            if not actions:
                continue
            resources = [str(resource) for resource in as_list(stack.resolve(statement["Resource"]))]
            allowed = (
                IDEMPOTENCY_ACTIONS
                if resources == [idempotency_table]
                else ACCESS_KEY_ACTIONS
                if resources == [access_keys_table]
                else TABLE_ITEM_ACTIONS
            )
            assert actions <= allowed, f"{role_name} is granted {sorted(actions - allowed)} on {resources}"
            assert all(resource.startswith("arn:aws:dynamodb:") for resource in resources), role_name


# ---------------------------------------------------------------------------------------------- access keys
def api_function_roles(stack: LocalStack) -> set[str]:
    return {f"{route.function}Role" for route in stack.api_routes()} - {"ManageAccessKeysFunctionRole"}


def kms_grants_on(role: dict[str, Any], stack: LocalStack, key_arn: str) -> set[str]:
    return {
        action
        for statement in statements(role)
        if key_arn in as_list(stack.resolve(statement["Resource"]))
        for action in as_list(statement["Action"])
    }


def test_only_the_functions_serving_ims_routes_may_open_access_key_secrets(deployed_roles: dict[str, Any]) -> None:
    # Given a stack that authenticates with access keys (with AwsIam the key does not exist: see below)
    stack = LocalStack(parameters={"Authentication": "AccessKey"})
    if "ManageAccessKeysFunctionRole" not in deployed_roles:
        assert all("AccessKeys" not in json.dumps(role) for role in deployed_roles.values())
        return
    key_arn = stack.arn("AccessKeysKey")
    verifiers = api_function_roles(stack)
    for role_name, role in deployed_roles.items():
        granted = kms_grants_on(role, stack, key_arn)
        if role_name in verifiers:
            # Then every function behind an IMS route verifies signatures, so it may decrypt, and only that
            assert granted == {"kms:Decrypt"}, role_name
            tags = {tag["Key"]: tag["Value"] for tag in role["Properties"].get("Tags", [])}
            assert tags.get("diskport-access-key-verifier") == {"Ref": "AWS::StackName"}, role_name
        elif role_name == "ManageAccessKeysFunctionRole":
            # And the operator's function seals new secrets but can never read one back
            assert granted == {"kms:GenerateDataKey"}
        else:
            assert granted == set(), f"{role_name} reaches the access keys' KMS key: {sorted(granted)}"


def test_the_access_keys_kms_key_lets_only_tagged_verifiers_decrypt() -> None:
    stack = LocalStack(parameters={"Authentication": "AccessKey"})
    policy = stack.resources["AccessKeysKey"]["Properties"]["KeyPolicy"]["Statement"]
    decrypting = [statement for statement in policy if "kms:Decrypt" in as_list(statement["Action"])]
    assert len(decrypting) == 1
    assert decrypting[0]["Condition"] == {
        "StringEquals": {"aws:PrincipalTag/diskport-access-key-verifier": {"Ref": "AWS::StackName"}}
    }
    assert all("*" not in action for statement in policy for action in as_list(statement["Action"]))


def test_with_aws_iam_the_stack_has_no_access_keys_and_the_gateway_checks_sigv4() -> None:
    stack = LocalStack(parameters={"Authentication": "AwsIam"})
    assert "AccessKeysTable" not in stack.resources and "AccessKeysKey" not in stack.resources
    auth = stack.resolve(stack.resources["ImsApi"]["Properties"]["Auth"])
    assert auth["DefaultAuthorizer"] == "AWS_IAM"
    assert stack.function_environment("GetJobFunction")["PROJECT_ID_SOURCE"] == "iam"


def test_with_access_keys_the_functions_verify_and_only_the_key_routes_need_iam() -> None:
    stack = LocalStack(parameters={"Authentication": "AccessKey"})
    auth = stack.resolve(stack.resources["ImsApi"]["Properties"]["Auth"])
    assert auth["DefaultAuthorizer"] == ""
    for route in stack.api_routes():
        environment = stack.function_environment(route.function)
        if route.function == "ManageAccessKeysFunction":
            event = stack.resources[route.function]["Properties"]["Events"][route.event_name]
            assert event["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}
        else:
            assert environment["PROJECT_ID_SOURCE"] == "access_key", route
