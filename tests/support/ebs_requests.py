"""EBS direct API requests as the service sends them, and what a refusal answers, for the strict EBS's tests."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError


def checksum(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def put(ebs: Any, snapshot_id: str, index: int, data: bytes, **overrides: Any) -> Any:
    request = {
        "SnapshotId": snapshot_id,
        "BlockIndex": index,
        "BlockData": data,
        "DataLength": len(data),
        "Checksum": checksum(data),
        "ChecksumAlgorithm": "SHA256",
    } | overrides
    return ebs.put_snapshot_block(**request)


def refusal(call: Any) -> tuple[str, str | None, int]:
    """(error code, reason, HTTP status) of the ClientError `call` raises."""
    with pytest.raises(ClientError) as refused:
        call()
    answer: dict[str, Any] = dict(refused.value.response)
    return str(answer["Error"]["Code"]), answer.get("Reason"), int(answer["ResponseMetadata"]["HTTPStatusCode"])
