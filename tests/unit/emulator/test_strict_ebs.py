"""Local mode's EBS direct APIs answer as AWS documents them, not as moto's lenient mock does."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from diskport_emulator import install_strict_services
from diskport_emulator.services.ebs import BLOCK_SIZE, StrictEbsBackend
from tests.support.ebs_requests import checksum, put, refusal

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


@pytest.fixture
def ebs() -> Iterator[Any]:
    install_strict_services()
    with mock_aws():
        yield boto3.client("ebs", region_name="us-east-1", config=NO_RETRIES)


def linear(*blocks: bytes) -> str:
    return base64.b64encode(
        hashlib.sha256(b"".join(hashlib.sha256(data).digest() for data in blocks)).digest()
    ).decode()


BLOCK_A = b"\xa1" * BLOCK_SIZE
BLOCK_B = b"\xb2" * BLOCK_SIZE


def test_a_snapshot_reports_the_block_size_ebs_uses(ebs: Any) -> None:
    started = ebs.start_snapshot(VolumeSize=1)
    assert (started["BlockSize"], started["Status"]) == (524_288, "pending")
    put(ebs, started["SnapshotId"], 0, BLOCK_A)
    assert ebs.list_snapshot_blocks(SnapshotId=started["SnapshotId"])["BlockSize"] == 524_288


def test_a_block_whose_checksum_is_not_its_data_is_refused_and_not_kept(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    answer = refusal(lambda: put(ebs, snapshot_id, 0, BLOCK_A, Checksum=checksum(BLOCK_B)))
    assert answer == ("ValidationException", "INVALID_PARAMETER_VALUE", 400)
    assert ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"] == []


def test_a_block_shorter_than_512_kib_is_refused(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    short = BLOCK_A[:4096]
    assert refusal(lambda: put(ebs, snapshot_id, 0, short))[:2] == ("ValidationException", "INVALID_PARAMETER_VALUE")


def test_a_data_length_that_is_not_the_bodys_length_is_refused(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    refused = refusal(lambda: put(ebs, snapshot_id, 0, BLOCK_A[:-1] + b"", DataLength=BLOCK_SIZE))
    assert refused[:2] == ("ValidationException", "INVALID_PARAMETER_VALUE")


def test_a_block_beyond_the_volume_is_refused(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    assert refusal(lambda: put(ebs, snapshot_id, 2048, BLOCK_A))[:2] == ("ValidationException", "INVALID_BLOCK")


def test_completing_with_a_wrong_block_count_is_refused_and_the_snapshot_stays_pending(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 0, BLOCK_A)
    put(ebs, snapshot_id, 5, BLOCK_B)
    assert (
        refusal(lambda: ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=1))[0] == "ValidationException"
    )
    state = boto3.client("ec2", region_name="us-east-1").describe_snapshots(SnapshotIds=[snapshot_id])
    assert state["Snapshots"][0]["State"] == "pending"


def test_completing_with_a_wrong_linear_aggregate_is_refused(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 0, BLOCK_A)
    put(ebs, snapshot_id, 5, BLOCK_B)
    wrong_order = linear(BLOCK_B, BLOCK_A)
    refused = refusal(
        lambda: ebs.complete_snapshot(
            SnapshotId=snapshot_id,
            ChangedBlocksCount=2,
            Checksum=wrong_order,
            ChecksumAlgorithm="SHA256",
            ChecksumAggregationMethod="LINEAR",
        )
    )
    assert refused[0] == "ValidationException"


def test_a_snapshot_completed_with_the_right_count_and_aggregate_turns_completed_after_the_delay(
    ebs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISKPORT_EBS_COMPLETION_SECONDS", "0.3")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 0, BLOCK_A)
    put(ebs, snapshot_id, 5, BLOCK_B)
    answer = ebs.complete_snapshot(
        SnapshotId=snapshot_id,
        ChangedBlocksCount=2,
        Checksum=linear(BLOCK_A, BLOCK_B),
        ChecksumAlgorithm="SHA256",
        ChecksumAggregationMethod="LINEAR",
    )
    assert answer["Status"] == "pending"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "pending"
    time.sleep(0.6)
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed"
    assert refusal(lambda: put(ebs, snapshot_id, 1, BLOCK_A))[0] == "ValidationException"


def test_the_same_client_token_answers_the_same_snapshot_and_a_different_request_conflicts(ebs: Any) -> None:
    first = ebs.start_snapshot(VolumeSize=1, ClientToken="job-1")["SnapshotId"]
    assert ebs.start_snapshot(VolumeSize=1, ClientToken="job-1")["SnapshotId"] == first
    assert refusal(lambda: ebs.start_snapshot(VolumeSize=2, ClientToken="job-1")) == ("ConflictException", None, 409)
    assert ebs.start_snapshot(VolumeSize=1, ClientToken="job-2")["SnapshotId"] != first


def test_a_new_snapshot_does_not_exist_for_writes_during_the_configured_window(
    ebs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISKPORT_EBS_NOT_FOUND_SECONDS", "0.3")
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    assert refusal(lambda: put(ebs, snapshot_id, 0, BLOCK_A)) == (
        "ResourceNotFoundException",
        "SNAPSHOT_NOT_FOUND",
        404,
    )
    time.sleep(0.4)
    assert put(ebs, snapshot_id, 0, BLOCK_A)["Checksum"] == checksum(BLOCK_A)


def test_writes_beyond_the_per_snapshot_rate_are_throttled_as_ebs_throttles(
    ebs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT", "0.5")  # one write, then one every two seconds
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 0, BLOCK_A)
    assert refusal(lambda: put(ebs, snapshot_id, 3, BLOCK_A)) == (
        "RequestThrottledException",
        "RESOURCE_LEVEL_THROTTLE",
        400,
    )
    other = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    assert put(ebs, other, 0, BLOCK_A)["ChecksumAlgorithm"] == "SHA256"  # another snapshot has its own quota
    time.sleep(2.1)
    put(ebs, snapshot_id, 3, BLOCK_A)  # the quota refills


def test_writes_beyond_the_per_account_rate_are_throttled_across_snapshots(
    ebs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISKPORT_EBS_PUT_RATE_PER_ACCOUNT", "0.5")  # one write, then one every two seconds
    first, second = (ebs.start_snapshot(VolumeSize=1)["SnapshotId"] for _ in range(2))
    put(ebs, first, 0, BLOCK_A)
    assert refusal(lambda: put(ebs, second, 0, BLOCK_A))[:2] == ("RequestThrottledException", "ACCOUNT_THROTTLED")


def test_the_configured_latency_delays_each_write(ebs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISKPORT_EBS_PUT_LATENCY_MS", "150")
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    started = time.monotonic()
    put(ebs, snapshot_id, 0, BLOCK_A)
    assert time.monotonic() - started >= 0.15


def test_an_encrypted_snapshot_needs_an_enabled_key(ebs: Any) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    started = ebs.start_snapshot(VolumeSize=1, Encrypted=True, KmsKeyArn=key_arn)
    assert started["KmsKeyArn"] == key_arn
    kms.disable_key(KeyId=key_arn.rpartition("/")[2])
    refused = refusal(lambda: ebs.start_snapshot(VolumeSize=1, Encrypted=True, KmsKeyArn=key_arn))
    assert refused[:2] == ("ValidationException", "INVALID_CUSTOMER_KEY")
    missing = key_arn.rpartition("/")[0] + "/00000000-0000-0000-0000-000000000000"
    assert (
        refusal(lambda: ebs.start_snapshot(VolumeSize=1, Encrypted=True, KmsKeyArn=missing))[1]
        == "INVALID_CUSTOMER_KEY"
    )


def test_blocks_are_kept_on_disk_and_read_back_exactly_and_go_with_the_snapshot(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 7, BLOCK_B)
    block_file = StrictEbsBackend.block_files.path(snapshot_id)
    assert block_file.stat().st_blocks * 512 < 4 * BLOCK_SIZE  # sparse: only the written block takes room
    (listed,) = ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
    read = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=7, BlockToken=listed["BlockToken"])
    assert read["BlockData"].read() == BLOCK_B
    boto3.client("ec2", region_name="us-east-1").delete_snapshot(SnapshotId=snapshot_id)
    assert not block_file.exists()


def test_listing_pages_through_the_blocks_in_index_order(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    for index in range(105):
        put(ebs, snapshot_id, 104 - index, BLOCK_A)
    first = ebs.list_snapshot_blocks(SnapshotId=snapshot_id, MaxResults=100)
    second = ebs.list_snapshot_blocks(SnapshotId=snapshot_id, MaxResults=100, NextToken=first["NextToken"])
    indices = [block["BlockIndex"] for page in (first, second) for block in page["Blocks"]]
    assert indices == list(range(105))
    assert "NextToken" not in second
