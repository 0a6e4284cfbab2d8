"""Stopping local mode: say what it waits for, and stop at once when asked a second time.

The first Ctrl-C (or SIGTERM) stops taking uploads from the watched bucket and waits for the imports under way,
naming them, while the API keeps answering so whoever follows a job sees it end. A second one stops those
executions, as `StopExecution` does on AWS: each ends ABORTED, the template's rule on aborted executions runs
MarkFailed at once, and the job fails with its reason, before the process exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from diskport.stores import aws

STOP_ERROR = "LocalModeStopped"
STOP_CAUSE = "Local mode was stopped (a second Ctrl-C or SIGTERM) while the import was under way."
FAILED_JOBS_WAIT_SECONDS = 15.0


def imports_under_way(state_machine_arn: str) -> list[str]:
    """The execution ARNs of the imports running now."""
    stepfunctions = aws.client("stepfunctions")
    pages = stepfunctions.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, statusFilter="RUNNING"
    )
    return [str(execution["executionArn"]) for page in pages for execution in page["executions"]]


def drain(
    state_machine_arn: str,
    at_once: threading.Event,
    *,
    stop_execution: Callable[..., None],
    stop_taking_work: Callable[[], None],
    say: Callable[[str], None],
    job_has_failed: Callable[[str], bool],
) -> bool:
    """Wait for the imports under way; True when they all ended, False when `at_once` stopped them first."""
    running = imports_under_way(state_machine_arn)
    if not running:
        return True
    stop_taking_work()
    jobs = ", ".join(arn.rpartition(":")[2] for arn in running)
    say(
        f"diskport local mode is stopping: waiting for {len(running)} import(s) under way to end (job {jobs}); "
        "the API still answers, uploads no longer start imports.\n"
        "Press Ctrl-C again (or send SIGTERM) to stop at once: those imports then fail, as a stopped execution's "
        "do on AWS."
    )
    while running and not at_once.wait(timeout=1):
        running = imports_under_way(state_machine_arn)
    if not running:
        return True
    for arn in running:
        # StopExecution, and the ABORTED event AWS would emit at once (the rule's MarkFailed fails the job).
        stop_execution(arn, error=STOP_ERROR, cause=STOP_CAUSE)
    job_ids = [arn.rpartition(":")[2] for arn in running]
    deadline = time.monotonic() + FAILED_JOBS_WAIT_SECONDS
    while time.monotonic() < deadline and not all(job_has_failed(job_id) for job_id in job_ids):
        time.sleep(0.2)
    failed = sum(job_has_failed(job_id) for job_id in job_ids)
    say(f"diskport local mode stopped at once: {len(job_ids)} import(s) stopped, {failed} of their jobs failed.")
    return False
