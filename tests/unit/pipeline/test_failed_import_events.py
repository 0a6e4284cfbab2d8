"""MarkFailed reads both of its callers: the state machine's Catch and EventBridge's execution status change.

The payloads are the ones in `events/`, which `sam local invoke` uses too.
"""

from __future__ import annotations

import json
from pathlib import Path

from diskport.pipeline.failure import FailedImport
from diskport.pipeline.step_errors import decoded_failure

EVENTS = Path(__file__).resolve().parents[3] / "events"


def test_the_catch_payload_names_the_job_and_carries_the_steps_code_and_reason() -> None:
    failed = FailedImport.from_event(json.loads((EVENTS / "mark_failed.json").read_text()))
    assert failed.job_id == "9a175ac692fa125401930027b9c026b3"
    failure = decoded_failure(failed.error)
    assert failure is not None
    assert failure.code == "IMG.0057"
    assert failure.reason.startswith("The object 'disks/data1.qcow2' is in storage class GLACIER")


def test_an_execution_status_change_names_the_job_by_the_execution_name() -> None:
    failed = FailedImport.from_event(json.loads((EVENTS / "mark_failed_execution_timed_out.json").read_text()))
    assert failed.job_id == "9a175ac692fa125401930027b9c026b3"
    assert failed.execution_status == "TIMED_OUT"
    assert decoded_failure(failed.error) is None
