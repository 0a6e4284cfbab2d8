"""EventBridge's "Step Functions Execution Status Change" rules, for local mode.

moto's Step Functions emits no events, so a function's `EventBridgeRule` on `aws.states` status changes
(the template's safety net: a FAILED, TIMED_OUT or ABORTED execution → MarkFailed) would never fire.
`ExecutionStatusWatcher` polls the executions of the state machines a rule names and delivers each one
that ends in a status the rule matches, once, with the event EventBridge would send.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from diskport_emulator.template import LocalStack

EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
POLL_SECONDS = 2.0
logger = logging.getLogger(__name__)

# Calls the rule's target function with an event: (JSON payload, whether the function failed).
EventInvoker = Callable[[dict[str, Any]], tuple[str, bool]]


@dataclass(frozen=True)
class ExecutionStatusRule:
    """One function's EventBridge rule on the status changes of some state machines' executions."""

    function: str
    state_machine_arns: tuple[str, ...]
    statuses: tuple[str, ...]


def execution_status_rules(stack: LocalStack) -> list[ExecutionStatusRule]:
    """Every EventBridgeRule in the template that matches Step Functions execution status changes."""
    rules = []
    for function, spec in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in spec.get("Properties", {}).get("Events", {}).values():
            if event["Type"] != "EventBridgeRule":
                continue
            pattern = stack.resolve(event["Properties"]["Pattern"])
            if "aws.states" not in pattern.get("source", []) or EXECUTION_STATUS_CHANGE not in pattern.get(
                "detail-type", []
            ):
                continue
            detail = pattern.get("detail", {})
            rules.append(
                ExecutionStatusRule(
                    function=function,
                    state_machine_arns=tuple(detail.get("stateMachineArn", [])),
                    statuses=tuple(detail.get("status", [])),
                )
            )
    return rules


class ExecutionStatusWatcher:
    """Delivers a rule's matching execution endings to its function, each execution once."""

    def __init__(self, rule: ExecutionStatusRule, invoke: EventInvoker, step_functions: Any | None = None) -> None:
        self.rule = rule
        self._invoke = invoke
        self._step_functions: Any = step_functions if step_functions is not None else boto3.client("stepfunctions")
        self._delivered: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """Deliver every matching ended execution not delivered yet; how many were delivered."""
        delivered = 0
        for execution_arn in self._matching_executions():
            if execution_arn in self._delivered:
                continue
            execution = self._step_functions.describe_execution(executionArn=execution_arn)
            _, failed = self._invoke(execution_status_event(execution))
            if failed:
                logger.warning("The target of %s failed on %s", self.rule.function, execution_arn)
            # EventBridge retries a failed asynchronous target a few times, then drops the event; once is
            # what local mode can promise without redelivering forever.
            self._delivered.add(execution_arn)
            delivered += 1
        return delivered

    def deliver_stopped(self, execution_arn: str, *, error: str, cause: str) -> bool:
        """Deliver the ABORTED event StopExecution gives on AWS at once, when the rule matches it.

        moto's interpreter marks a stopped execution only once the step it is in returns, which for a Convert
        chunk can take minutes; AWS ends the execution (and emits its event) immediately.
        """
        if "ABORTED" not in self.rule.statuses or execution_arn in self._delivered:
            return False
        execution = self._step_functions.describe_execution(executionArn=execution_arn)
        stopped = {**execution, "status": "ABORTED", "stopDate": datetime.now(UTC), "error": error, "cause": cause}
        self._delivered.add(execution_arn)
        _, failed = self._invoke(execution_status_event(stopped))
        return not failed

    def _matching_executions(self) -> Iterator[str]:
        for state_machine_arn in self.rule.state_machine_arns:
            for status in self.rule.statuses:
                request: dict[str, Any] = {"stateMachineArn": state_machine_arn, "statusFilter": status}
                while True:
                    page = self._step_functions.list_executions(**request)
                    yield from (str(execution["executionArn"]) for execution in page.get("executions", []))
                    if not page.get("nextToken"):
                        break
                    request["nextToken"] = page["nextToken"]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"events-{self.rule.function}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_SECONDS + 5)

    def _run(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            try:
                self.poll_once()
            except Exception:
                logger.exception("Watching executions for %s failed", self.rule.function)


def execution_status_event(execution: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event for an execution's status, from DescribeExecution's answer."""
    arn = str(execution["executionArn"])
    _, _, _, region, account, *_ = arn.split(":")
    detail: dict[str, Any] = {
        "executionArn": arn,
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": _epoch_millis(execution.get("startDate")),
        "stopDate": _epoch_millis(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": EXECUTION_STATUS_CHANGE,
        "source": "aws.states",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


def _epoch_millis(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else None
