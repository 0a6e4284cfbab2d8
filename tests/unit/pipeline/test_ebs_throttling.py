"""EBS's own throttling answers are passing trouble, retried with back-off, never an import's failure.

The PutSnapshotBlock quota binds per account as well as per snapshot: imports running at once share it, so a
convert worker that paces itself within its snapshot's share may still be answered RequestThrottledException.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from diskport.errors import ThrottlingError
from diskport.pipeline.step_errors import as_step_error


@pytest.mark.parametrize("code", ["RequestThrottledException", "ConcurrentLimitExceededException"])
def test_an_ebs_throttling_answer_is_retried_as_throttling(code: str) -> None:
    answer = {"Error": {"Code": code, "Message": "slow down"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    escaping = as_step_error(ClientError(answer, "PutSnapshotBlock"))
    assert isinstance(escaping, ThrottlingError)
    assert "PutSnapshotBlock answered " + code in str(escaping)


def test_a_refused_block_is_not_mistaken_for_throttling() -> None:
    answer = {"Error": {"Code": "ValidationException", "Message": "bad"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    error = ClientError(answer, "PutSnapshotBlock")
    assert as_step_error(error) is error
