"""Create the template's resources in an AWS emulator (moto): tables, buckets, queues, functions, state machine.

Everything comes from `template.yaml` through `LocalStack`, so the local stack cannot drift from the
deployed one.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from typing import Any

import boto3

from diskport_emulator.iam import create_function_roles, role_arn
from diskport_emulator.services import install_strict_services
from diskport_emulator.services.dynamodb_writes import serialize_dynamodb_writes
from diskport_emulator.template import LocalStack

LOCAL_ROLE = "arn:aws:iam::{account}:role/diskport-local"


def provision(
    stack: LocalStack,
    session: boto3.session.Session | None = None,
    *,
    endpoint: str | None = None,
    function_roles: bool = False,
) -> None:
    """Create every resource of the template that local mode emulates.

    With `function_roles`, each function gets a role of its own holding its policies from the template (see
    `diskport_emulator.iam`), as it would when deployed, instead of one shared role.
    """
    serialize_dynamodb_writes()  # the emulator's transactions are not isolated otherwise (see dynamodb_writes.py)
    install_strict_services()  # EBS as AWS documents it (see services/ebs.py)
    session = session or boto3.session.Session(region_name=stack.region)
    clients = _Clients(session, endpoint)
    for logical_id, spec in stack.resources_of_type("AWS::DynamoDB::Table").items():
        _create_table(clients.get("dynamodb"), stack.physical_name(logical_id), spec["Properties"])
    for logical_id, spec in stack.resources_of_type("AWS::SQS::Queue").items():
        if "RedrivePolicy" not in spec.get("Properties", {}):
            _create_queue(clients.get("sqs"), stack, logical_id)
    for logical_id, spec in stack.resources_of_type("AWS::SQS::Queue").items():
        if "RedrivePolicy" in spec.get("Properties", {}):
            _create_queue(clients.get("sqs"), stack, logical_id)
    for logical_id in stack.resources_of_type("AWS::S3::Bucket"):
        _create_bucket(clients.get("s3"), stack, logical_id)
    keys = {
        logical_id: clients.get("kms").create_key(Description=str(spec["Properties"].get("Description", "")))
        for logical_id, spec in stack.resources_of_type("AWS::KMS::Key").items()
    }
    for logical_id, key in keys.items():
        stack.provisioned_arns[logical_id] = key["KeyMetadata"]["Arn"]  # policies name the key the emulator made
    for spec in stack.resources_of_type("AWS::KMS::Alias").values():
        target = spec["Properties"]["TargetKeyId"]["Ref"]
        clients.get("kms").create_alias(
            AliasName=str(stack.resolve(spec["Properties"]["AliasName"])),
            TargetKeyId=keys[target]["KeyMetadata"]["KeyId"],
        )
    if any(stack.resources_of_type("AWS::Serverless::Function")):
        if function_roles:
            create_function_roles(stack)
        _create_functions(clients.get("lambda"), clients.get("iam"), stack, function_roles=function_roles)
    for logical_id in stack.resources_of_type("AWS::Serverless::StateMachine"):
        clients.get("stepfunctions").create_state_machine(
            name=stack.physical_name(logical_id),
            definition=stack.state_machine_definition(logical_id),
            roleArn=LOCAL_ROLE.format(account=stack.account_id),
            type=stack.resources[logical_id]["Properties"].get("Type", "STANDARD"),
        )


class _Clients:
    def __init__(self, session: boto3.session.Session, endpoint: str | None) -> None:
        self._session, self._endpoint, self._made = session, endpoint, dict[str, Any]()

    def get(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self._session.client(service, endpoint_url=self._endpoint)  # type: ignore[call-overload]
        return self._made[service]


def _create_table(dynamodb: Any, name: str, properties: dict[str, Any]) -> None:
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    dynamodb.create_table(**request)
    time_to_live = properties.get("TimeToLiveSpecification")
    if time_to_live:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=time_to_live)


def _create_queue(sqs: Any, stack: LocalStack, logical_id: str) -> None:
    properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
    attributes = {}
    if "VisibilityTimeout" in properties:
        attributes["VisibilityTimeout"] = str(properties["VisibilityTimeout"])
    if "MessageRetentionPeriod" in properties:
        attributes["MessageRetentionPeriod"] = str(properties["MessageRetentionPeriod"])
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
    sqs.create_queue(QueueName=stack.physical_name(logical_id), Attributes=attributes)


def _create_bucket(s3: Any, stack: LocalStack, logical_id: str) -> None:
    name = stack.physical_name(logical_id)
    s3.create_bucket(Bucket=name)
    properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
    if properties.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=properties["VersioningConfiguration"])
    queue_configurations = properties.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
    if queue_configurations:
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": configuration["Queue"],
                        "Events": [configuration["Event"]],
                        "Filter": {"Key": {"FilterRules": configuration["Filter"]["S3Key"]["Rules"]}},
                    }
                    for configuration in queue_configurations
                ]
            },
        )


def _create_functions(lambda_client: Any, iam: Any, stack: LocalStack, *, function_roles: bool) -> None:
    role_name = LOCAL_ROLE.format(account=stack.account_id).rpartition("/")[2]
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )
    # The code never runs from this archive: local mode's runtime calls the handlers themselves.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("app.py", "def lambda_handler(event, context):\n    raise RuntimeError('run in-process')\n")
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        lambda_client.create_function(
            FunctionName=stack.physical_name(logical_id),
            Runtime=str(stack.function_property(logical_id, "Runtime")),
            Role=role_arn(stack, logical_id) if function_roles else LOCAL_ROLE.format(account=stack.account_id),
            Handler=str(stack.function_property(logical_id, "Handler")),
            Code={"ZipFile": archive.getvalue()},
            Timeout=int(stack.function_property(logical_id, "Timeout") or 3),
            MemorySize=int(stack.function_property(logical_id, "MemorySize") or 128),
            Environment={"Variables": stack.function_environment(logical_id)},
        )
