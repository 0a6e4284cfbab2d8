"""What an import's execution went through, as the Step Functions history tells it."""

from __future__ import annotations

from typing import Any

import boto3


def entered_states(importer: Any, job_id: str) -> list[str]:
    """The names of the states the job's execution entered, in order (an Inline Map's iterations included)."""
    executions = importer.stack.local.arn("ImportDataImageStateMachine").replace(":stateMachine:", ":execution:")
    history = boto3.client("stepfunctions").get_execution_history(executionArn=f"{executions}:{job_id}")
    return [
        event["stateEnteredEventDetails"]["name"] for event in history["events"] if "stateEnteredEventDetails" in event
    ]
