"""EBS snapshots through the EBS direct APIs: start, write blocks with checksums, complete, wait, delete.

The only code that touches EBS and the EC2 snapshot calls. Block arithmetic uses the engine's BLOCK_SIZE
(524,288 bytes), never what an endpoint reports (moto reports 512).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from diskport.engine import Block
from diskport.errors import ImportFailedError, SnapshotNotReadyError
from diskport.stores import aws, aws_errors

FIRST_COMPLETION_POLL_SECONDS = 0.25
SNAPSHOT_COMPLETED = "completed"
SNAPSHOT_FAILED = "error"


class LinearChecksum:
    """EBS's LINEAR aggregate: SHA-256 over the blocks' raw SHA-256 digests in block-index order, in base64.

    Fed one block checksum at a time, so the checksums of a large disk never need to be held together.
    """

    def __init__(self) -> None:
        self._aggregate = hashlib.sha256()
        self.count = 0

    def add(self, block_checksum: str) -> None:
        self._aggregate.update(base64.b64decode(block_checksum))
        self.count += 1

    def value(self) -> str:
        return base64.b64encode(self._aggregate.digest()).decode("ascii")


def linear_aggregate_checksum(block_checksums: Iterable[str]) -> str:
    aggregate = LinearChecksum()
    for checksum in block_checksums:
        aggregate.add(checksum)
    return aggregate.value()


class SnapshotThrottledError(Exception):
    """EBS refused a block for the request rate; the writer slows down and sends the block again."""


class SnapshotKeptError(Exception):
    """EBS refused to delete a snapshot, for a reason a retry would not change."""

    def __init__(self, snapshot_id: str, code: str) -> None:
        super().__init__(f"EBS kept snapshot {snapshot_id}: {code}")
        self.snapshot_id = snapshot_id
        self.code = code


class BlockWriter(Protocol):
    """What Convert needs of a snapshot: writing one block."""

    def put_block(self, snapshot_id: str, block: Block) -> None: ...


class SnapshotStore:
    """EBS snapshots: the EBS direct client for data, the EC2 client for state and deletion."""

    def __init__(self, ebs_client: Any | None = None, ec2_client: Any | None = None) -> None:
        self._ebs = ebs_client or aws.client("ebs")
        self._ec2 = ec2_client or aws.client("ec2")

    def start(
        self,
        *,
        volume_size_gib: int,
        client_token: str,
        description: str,
        tags: dict[str, str],
        kms_key_arn: str | None = None,
    ) -> str:
        """A new pending snapshot's id; the same token answers the same snapshot when a step is re-run."""
        request: dict[str, Any] = {
            "VolumeSize": volume_size_gib,
            "ClientToken": client_token,
            "Description": description,
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
        }
        if kms_key_arn is not None:
            request.update(Encrypted=True, KmsKeyArn=kms_key_arn)
        return str(self._ebs.start_snapshot(**request)["SnapshotId"])

    def put_block(self, snapshot_id: str, block: Block) -> None:
        """Write one block; SnapshotThrottledError when EBS still answers that the rate is too high once the
        client's own retries are spent (the writer then slows down and sends the block again)."""
        try:
            self._ebs.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=block.index,
                BlockData=block.data,
                DataLength=len(block.data),
                Checksum=block.checksum,
                ChecksumAlgorithm="SHA256",
            )
        except ClientError as error:
            code = aws_errors.error_code(error)
            # EBS direct answers these when a snapshot's or the account's PutSnapshotBlock quota is exceeded.
            if aws_errors.is_throttling(error):
                raise SnapshotThrottledError(f"EBS throttled a block of {snapshot_id} ({code}).") from error
            # Right after StartSnapshot EBS may answer "does not exist" for about two minutes.
            if code == "ResourceNotFoundException":
                raise SnapshotNotReadyError(f"Snapshot {snapshot_id} does not accept blocks yet.") from error
            raise

    def complete(self, snapshot_id: str, *, changed_blocks_count: int, aggregate_checksum: str) -> None:
        """Seal the snapshot; EBS checks the block count and the aggregate checksum against what it received.

        A snapshot of no block (a disk of zeros) has no block checksums to aggregate: it is sealed with its count
        alone (the checksum parameters of CompleteSnapshot are optional), not with the SHA-256 of nothing.
        """
        checksum: dict[str, Any] = {}
        if changed_blocks_count > 0:
            checksum = {
                "Checksum": aggregate_checksum,
                "ChecksumAlgorithm": "SHA256",
                "ChecksumAggregationMethod": "LINEAR",
            }
        self._ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=changed_blocks_count, **checksum)

    def state(self, snapshot_id: str) -> str | None:
        """`pending`, `completed`, `error`..., or None when the snapshot does not exist."""
        try:
            snapshots = self._ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        except ClientError as error:
            if aws_errors.error_code(error) == "InvalidSnapshot.NotFound":
                return None
            raise
        return str(snapshots[0]["State"]) if snapshots else None

    def wait_until_completed(self, snapshot_id: str, *, timeout_seconds: float, poll_seconds: float = 5.0) -> None:
        """Return once EBS has made the snapshot usable; SnapshotNotReadyError (retried) when it takes longer.

        EBS does not document how long completing takes, and the import waits for it: the first looks come a
        quarter of a second apart, each pause twice the last, up to `poll_seconds`.
        """
        deadline = time.monotonic() + timeout_seconds
        pause = min(FIRST_COMPLETION_POLL_SECONDS, poll_seconds)
        while True:
            state = self.state(snapshot_id)
            if state == SNAPSHOT_COMPLETED:
                return
            if state == SNAPSHOT_FAILED or state is None:
                raise ImportFailedError(f"EBS could not complete snapshot {snapshot_id} (state {state}).")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SnapshotNotReadyError(f"Snapshot {snapshot_id} is still {state}.")
            time.sleep(min(pause, left))
            pause = min(poll_seconds, 2 * pause)

    def ids_tagged(self, key: str, value: str) -> list[str]:
        """Snapshots of this account carrying the tag, such as the ones an import started."""
        paginator = self._ec2.get_paginator("describe_snapshots")
        pages = paginator.paginate(OwnerIds=["self"], Filters=[{"Name": f"tag:{key}", "Values": [value]}])
        return [str(snapshot["SnapshotId"]) for page in pages for snapshot in page["Snapshots"]]

    def delete(self, snapshot_id: str) -> None:
        """Delete the snapshot; one that is already gone is fine.

        Passing trouble (throttling, a 5xx) is raised as AWS answered it, to retry; a refusal a retry would not
        change (a snapshot in use by an AMI, one in a state EBS cannot delete) is SnapshotKeptError.
        """
        try:
            self._ec2.delete_snapshot(SnapshotId=snapshot_id)
        except ClientError as error:
            if aws_errors.error_code(error) == "InvalidSnapshot.NotFound":
                return
            if aws_errors.is_transient(error):
                raise
            raise SnapshotKeptError(snapshot_id, aws_errors.error_code(error)) from error
