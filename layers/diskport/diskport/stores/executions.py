"""The import state machine's executions: one per job, named after it, so a start is never doubled."""

from __future__ import annotations

import json
from typing import Any

from diskport.stores import aws, aws_errors


class Executions:
    """Step Functions, for starting imports."""

    def __init__(self, state_machine_arn: str, step_functions: Any | None = None) -> None:
        self._state_machine_arn = state_machine_arn
        self._step_functions = step_functions if step_functions is not None else aws.client("stepfunctions")

    def start(self, job_id: str) -> None:
        """Start the job's execution; raises what Step Functions answered, ExecutionAlreadyExists included."""
        self._step_functions.start_execution(
            stateMachineArn=self._state_machine_arn, name=job_id, input=json.dumps({"job_id": job_id})
        )

    def start_unless_started(self, job_id: str) -> None:
        """Start the job's execution; a no-op when it already exists (the name is the job id)."""
        try:
            self.start(job_id)
        except aws_errors.ClientError as error:
            if aws_errors.error_code(error) != "ExecutionAlreadyExists":
                raise
