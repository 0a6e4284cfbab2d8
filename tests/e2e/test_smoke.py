"""`diskport smoke` against local mode: the same code a user points at a deployed stack with --endpoint."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from .conftest import LocalModeProcess


def test_the_smoke_test_imports_a_disk_reads_its_snapshot_back_and_deletes_what_it_made(
    local_mode: LocalModeProcess,
) -> None:
    # When the smoke test runs against local mode
    run = local_mode.cli("smoke", "--upload-bucket", "e2e-smoke")

    # Then it passes, having compared every data block of its disk with the snapshot's
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["passed"] is True
    assert result["blocks_compared"] == 5 and result["mismatched_blocks"] == []
    assert "the smoke test passed: 5 blocks read back as written" in run.stderr

    # And what it made is gone: the snapshot and the uploaded disk
    with pytest.raises(ClientError, match=r"InvalidSnapshot\.NotFound"):
        local_mode.aws_client("ec2").describe_snapshots(SnapshotIds=[result["snapshot_id"]])
    assert local_mode.aws_client("s3").list_objects_v2(Bucket="e2e-smoke").get("KeyCount") == 0
    assert f"snapshot {result['snapshot_id']}" in result["deleted"]
