"""Local mode fires the template's EventBridge rule on ended executions, which moto never emits."""

from __future__ import annotations

import json
from typing import Any

import boto3

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.execution_events import (
    EXECUTION_STATUS_CHANGE,
    ExecutionStatusRule,
    ExecutionStatusWatcher,
    execution_status_rules,
)


class Recording:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> tuple[str, bool]:
        self.events.append(event)
        return "null", False


def test_the_safety_net_rule_of_the_template_targets_mark_failed() -> None:
    stack = LocalStack()
    assert execution_status_rules(stack) == [
        ExecutionStatusRule(
            function="MarkFailedFunction",
            state_machine_arns=(stack.arn("ImportDataImageStateMachine"),),
            statuses=("FAILED", "TIMED_OUT", "ABORTED"),
        )
    ]


def test_an_aborted_execution_is_delivered_once_as_eventbridge_sends_it(stack: Any) -> None:
    # Given an execution of the import state machine that someone stops
    step_functions = boto3.client("stepfunctions")
    state_machine_arn = stack.local.arn("ImportDataImageStateMachine")
    execution_arn = step_functions.start_execution(
        stateMachineArn=state_machine_arn, name="0" * 32, input=json.dumps({"job_id": "0" * 32})
    )["executionArn"]
    running_one = step_functions.start_execution(stateMachineArn=state_machine_arn, name="1" * 32, input="{}")
    step_functions.stop_execution(executionArn=execution_arn)
    (rule,) = execution_status_rules(stack.local)
    target = Recording()
    watcher = ExecutionStatusWatcher(rule, target, step_functions)

    # When the watcher polls twice
    assert watcher.poll_once() == 1
    assert watcher.poll_once() == 0

    # Then the target got one Step Functions status change event for the stopped execution only
    (event,) = target.events
    assert event["source"] == "aws.states"
    assert event["detail-type"] == EXECUTION_STATUS_CHANGE
    assert event["resources"] == [execution_arn]
    assert event["region"] == "us-east-1" and event["account"] == "123456789012"
    detail = event["detail"]
    assert (detail["name"], detail["status"], detail["stateMachineArn"]) == ("0" * 32, "ABORTED", state_machine_arn)
    assert detail["executionArn"] == execution_arn
    assert isinstance(detail["startDate"], int) and isinstance(detail["stopDate"], int)
    assert running_one["executionArn"] not in json.dumps(target.events)
