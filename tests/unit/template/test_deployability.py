"""What CloudFormation, Step Functions and EventBridge accept and do on AWS, checked on the template and the ASL.

Each test names the rule of the AWS documentation it holds the stack to; `make lint` runs AWS's own validators
(cfn-lint on the transformed template, asl-validator on the substituted definition) as well.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import diskport.errors
from diskport.settings import Settings

from diskport_emulator.template import PROJECT_ROOT, LocalStack, load_template

ASL_PATH = PROJECT_ROOT / "statemachine" / "import_data_image.asl.json"
# DynamoDB's UpdateItem errors (DynamoDB API reference, UpdateItem and common errors), as Step Functions' DynamoDB
# integration names them: "DynamoDB." and the exception name.
DYNAMODB_ERRORS = {
    "DynamoDB.ConditionalCheckFailedException",
    "DynamoDB.InternalServerError",
    "DynamoDB.ItemCollectionSizeLimitExceededException",
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.ResourceNotFoundException",
    "DynamoDB.ThrottlingException",
    "DynamoDB.TransactionConflictException",
}
# Errors of Step Functions' Lambda integration and of the Lambda runtime (Step Functions error handling).
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.Unknown",
    "Runtime.ExitError",
    "Runtime.Unknown",
    "Sandbox.Timedout",
}
STATES_ERRORS = {"States.ALL", "States.Timeout", "States.TaskFailed"}
PROJECT_ERRORS = {
    name for name, value in inspect.getmembers(diskport.errors, inspect.isclass) if name.endswith("Error")
}


def states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from states(state["ItemProcessor"])
        for branch in state.get("Branches", []):
            yield from states(branch)


def retried_errors(state: dict[str, Any]) -> set[str]:
    return {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}


def test_the_state_machine_file_is_json_as_written() -> None:
    # DefinitionSubstitutions replace strings; a number placeholder outside quotes would not be JSON
    definition = json.loads(ASL_PATH.read_text())
    assert "MaxConcurrency" not in definition["States"]["Convert"]
    assert definition["States"]["Convert"]["MaxConcurrencyPath"] == "$.fetch.max_concurrency"


def test_every_retried_error_is_one_a_service_or_the_project_raises() -> None:
    definition = json.loads(ASL_PATH.read_text())
    known = DYNAMODB_ERRORS | LAMBDA_ERRORS | STATES_ERRORS | PROJECT_ERRORS
    for name, state in states(definition):
        unknown = retried_errors(state) - known
        assert not unknown, f"{name} retries errors nothing raises: {sorted(unknown)}"


def test_mark_running_retries_dynamodbs_own_transient_errors() -> None:
    retried = retried_errors(json.loads(ASL_PATH.read_text())["States"]["MarkRunning"])
    assert {"DynamoDB.InternalServerError", "DynamoDB.ProvisionedThroughputExceededException"} <= retried
    assert "DynamoDB.ConditionalCheckFailedException" not in retried  # the job was not INIT: never retried


def test_every_lambda_task_retries_a_lambda_client_timeout_and_a_timed_out_sandbox() -> None:
    for name, state in states(json.loads(ASL_PATH.read_text())):
        if state.get("Resource") == "arn:aws:states:::lambda:invoke" and name != "MarkFailed":
            assert {"Lambda.ClientExecutionTimeoutException", "Sandbox.Timedout"} <= retried_errors(state), name


def test_convert_runs_as_many_workers_as_the_convert_concurrency_parameter_says() -> None:
    stack = LocalStack(parameters={"ConvertConcurrency": "24", "WorkersBesideFetch": "8"})
    definition = json.loads(stack.state_machine_definition("ImportDataImageStateMachine"))
    fetch_branch, beside_branch = definition["States"]["Prepare"]["Branches"]
    assert fetch_branch["States"]["Fetch"]["ResultSelector"]["max_concurrency.$"] == "States.StringToJson('24')"
    slots = beside_branch["States"]["ListWorkersBesideFetch"]["Parameters"]["slots.$"]
    assert slots == "States.ArrayRange(1, States.StringToJson('8'), 1)"
    # Fetch hands the first chunks to at most as many workers as the parameters say
    fetch_environment = stack.function_environment("FetchSourceFunction")
    assert fetch_environment["CONVERT_CONCURRENCY"] == "24"
    assert fetch_environment["WORKERS_BESIDE_FETCH"] == "8"


def test_no_fn_join_has_a_delimiter_other_than_a_literal_string() -> None:
    def joins(value: Any) -> Iterator[Any]:
        if isinstance(value, dict):
            if "Fn::Join" in value:
                yield value["Fn::Join"][0]
            for inner in value.values():
                yield from joins(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from joins(inner)

    delimiters = list(joins(load_template()))
    assert delimiters
    assert all(isinstance(delimiter, str) for delimiter in delimiters), delimiters


def test_the_chunk_bytes_parameter_refuses_what_the_settings_refuse() -> None:
    parameter = load_template()["Parameters"]["ChunkBytes"]
    minimum = next(rule.ge for rule in Settings.model_fields["chunk_bytes"].metadata if hasattr(rule, "ge"))
    assert parameter["MinValue"] == minimum == 524_288


def test_the_state_machine_name_fits_step_functions_limit_whatever_the_stack_name() -> None:
    # A stack name may be 128 characters; a state machine name at most 80
    stack = LocalStack(stack_name="a" * 128)
    name = stack.physical_name("ImportDataImageStateMachine")
    assert len(name) <= 80
    arn = stack.function_environment("CreateImageJobFunction")["STATE_MACHINE_ARN"]
    assert arn.endswith(f":stateMachine:{name}")


def test_undelivered_execution_endings_land_in_a_dead_letter_queue_eventbridge_may_write() -> None:
    stack = LocalStack()
    (event,) = stack.resources["MarkFailedFunction"]["Properties"]["Events"].values()
    queue_arn = stack.resolve(event["Properties"]["DeadLetterConfig"]["Arn"])
    (queue,) = [name for name in stack.resources_of_type("AWS::SQS::Queue") if stack.arn(name) == queue_arn]
    queue_url = stack.resolve({"Ref": queue})
    policies = stack.resources_of_type("AWS::SQS::QueuePolicy").values()
    (policy,) = [spec for spec in policies if stack.resolve(spec["Properties"]["Queues"]) == [queue_url]]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["MarkFailedFunctionExecutionEndedBadly", "Arn"]
    }
    # and an alarm says when one is there
    alarms = stack.resources_of_type("AWS::CloudWatch::Alarm").values()
    watched = [stack.resolve(alarm["Properties"]["Dimensions"][0]["Value"]) for alarm in alarms]
    assert stack.physical_name(queue) in watched


def test_the_upload_queue_accepts_notifications_of_the_watched_bucket_only() -> None:
    stack = LocalStack()
    bucket_name = stack.resolve(stack.resources["WatchedBucket"]["Properties"]["BucketName"])
    (statement,) = stack.resources["UploadQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    condition = stack.resolve(statement["Condition"])
    assert condition == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket_name}"},
        "StringEquals": {"aws:SourceAccount": stack.account_id},
    }
    assert len(bucket_name) <= 63 and bucket_name == bucket_name.lower()


def test_the_api_writes_access_logs_that_expire() -> None:
    stack = LocalStack()
    settings = stack.resources["ImsApi"]["Properties"]["AccessLogSettings"]
    log_group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert stack.resources[log_group]["Properties"]["RetentionInDays"] > 0
    assert "$context.requestId" in settings["Format"] and "$context.identity.accountId" in settings["Format"]
    json.loads(settings["Format"].replace("\n", ""))  # one JSON object per request


# The key permissions the EBS direct APIs documentation lists for encrypted snapshots (ebsapi-permissions).
EBS_DIRECT_KEY_ACTIONS = {
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:CreateGrant",
    "kms:DescribeKey",
}


def own_statements(function: str) -> list[dict[str, Any]]:
    policies = load_template()["Resources"][function]["Properties"]["Policies"]
    return [statement for policy in policies if "Statement" in policy for statement in policy["Statement"]]


def test_tagging_the_new_snapshot_is_allowed_as_aws_documents_it_for_start_snapshot() -> None:
    (tagging,) = [s for s in own_statements("FetchSourceFunction") if "ec2:CreateTags" in s["Action"]]
    assert "Condition" not in tagging  # no ec2:CreateAction value is documented for ebs:StartSnapshot
    assert LocalStack().resolve(tagging["Resource"]) == "arn:aws:ec2:us-east-1::snapshot/*"


def test_every_function_writing_snapshots_holds_the_documented_key_permissions_with_no_via_service() -> None:
    for function in ("FetchSourceFunction", "ConvertChunkFunction", "RegisterImageFunction"):
        key_statements = [s for s in own_statements(function) if any(a.startswith("kms:") for a in s["Action"])]
        granted = {action for statement in key_statements for action in statement["Action"]}
        assert granted >= EBS_DIRECT_KEY_ACTIONS, function
        assert all("Condition" not in statement for statement in key_statements), function


def test_the_state_machine_may_watch_and_stop_its_distributed_map_runs_as_aws_example_grants() -> None:
    stack = LocalStack()
    name = stack.physical_name("ImportDataImageStateMachine")
    (watch,) = [s for s in own_statements("ImportDataImageStateMachine") if s.get("Sid") == "WatchDistributedMap"]
    resources = stack.resolve(watch["Resource"])
    execution = f"arn:aws:states:us-east-1:{stack.account_id}:execution:{name}"
    assert f"{execution}:*" in resources and f"{execution}/*" in resources
