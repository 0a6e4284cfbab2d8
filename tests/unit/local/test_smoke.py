"""`diskport smoke` fails when the snapshot does not hold the disk, and deletes what it made either way.

An in-memory stack stands in for the API, S3, EBS and EC2: it imports the uploaded disk into a snapshot of its
non-zero blocks, optionally corrupting one, as a faulty import would.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from diskport_local.smoke import DATA_BLOCKS, expected_blocks, run_smoke_test, smoke_disk


@dataclass
class FakeStack:
    corrupt_block: int | None = None
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    snapshots: dict[str, dict[int, bytes]] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)

    # the API
    def create_data_image(self, request: dict[str, Any]) -> str:
        bucket, _, key = request["image_url"].partition(":")
        blocks = expected_blocks(self.objects[(bucket, key)])
        if self.corrupt_block is not None:
            blocks[self.corrupt_block] = bytes(len(blocks[self.corrupt_block]))[:-1] + b"\x01"
        self.snapshots["snap-1"] = blocks
        self.images["image-1"] = {"id": "image-1", "diskport_snapshot_id": "snap-1", "status": "active"}
        return "job-1"

    def call(self, method: str, path: str) -> None:
        assert (method, path) == ("DELETE", "/v2/images/image-1")
        del self.images["image-1"]

    # S3
    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803 (boto3's names)
        self.objects[(Bucket, Key)] = Body

    def delete_object(self, Bucket: str, Key: str) -> None:  # noqa: N803
        del self.objects[(Bucket, Key)]

    # EBS direct and EC2
    def list_snapshot_blocks(self, SnapshotId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"Blocks": [{"BlockIndex": index, "BlockToken": str(index)} for index in self.snapshots[SnapshotId]]}

    def get_snapshot_block(self, SnapshotId: str, BlockIndex: int, BlockToken: str) -> dict[str, Any]:  # noqa: N803
        return {"BlockData": io.BytesIO(self.snapshots[SnapshotId][BlockIndex])}

    def delete_snapshot(self, SnapshotId: str) -> None:  # noqa: N803
        if SnapshotId not in self.snapshots:
            raise ClientError({"Error": {"Code": "InvalidSnapshot.NotFound"}}, "DeleteSnapshot")
        del self.snapshots[SnapshotId]


@dataclass
class FakeTarget:
    stack: FakeStack

    @property
    def api(self) -> Any:
        stack = self.stack

        class Api:
            create_data_image = staticmethod(stack.create_data_image)
            call = staticmethod(stack.call)

            @staticmethod
            def images(image_id: str) -> list[dict[str, Any]]:
                return [stack.images[image_id]]

        return Api()

    def aws_client(self, service: str) -> FakeStack:
        return self.stack


def wait_for_job(api: Any, job_id: str, **_: Any) -> dict[str, Any]:
    return {"status": "SUCCESS", "entities": {"image_id": "image-1"}}


def test_the_generated_disk_has_data_blocks_and_holes_and_is_new_each_run() -> None:
    disk = smoke_disk("run-a")
    assert sorted(expected_blocks(disk)) == list(DATA_BLOCKS)
    assert disk.startswith(b"diskport smoke test run-a\n")
    assert smoke_disk("run-b") != disk


def test_a_snapshot_holding_the_disk_passes_and_everything_made_is_deleted() -> None:
    stack = FakeStack()
    result = run_smoke_test(FakeTarget(stack), "bucket", poll_seconds=0, wait_for_job=wait_for_job)
    assert result.passed, result.failure
    assert result.blocks_compared == len(DATA_BLOCKS)
    assert (stack.objects, stack.snapshots, stack.images) == ({}, {}, {})
    assert result.left_behind == []


def test_a_snapshot_with_one_wrong_block_fails_and_still_deletes_everything_made() -> None:
    stack = FakeStack(corrupt_block=DATA_BLOCKS[2])
    result = run_smoke_test(FakeTarget(stack), "bucket", poll_seconds=0, wait_for_job=wait_for_job)
    assert not result.passed
    assert result.mismatched_blocks == [DATA_BLOCKS[2]]
    assert "differs from the disk in blocks" in (result.failure or "")
    assert (stack.objects, stack.snapshots, stack.images) == ({}, {}, {})
