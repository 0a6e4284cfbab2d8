"""The pipeline against EBS and EC2 as AWS documents them where moto is lenient: a snapshot completes a little
after CompleteSnapshot (and a second one is refused), a disk of zeros has no checksum to aggregate, and a
snapshot may refuse to be deleted."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from diskport.settings import get_settings
from diskport.stores.images import ImageStore
from diskport.stores.snapshots import SnapshotKeptError, SnapshotStore
from moto.core.botocore_stubber import BotocoreStubber

from .conftest import ImageFile, Importer

MIB = 1024 * 1024


class CompletingSnapshots:
    """EBS after CompleteSnapshot: the snapshot stays `pending` for a few DescribeSnapshots, then `completed`; a
    second CompleteSnapshot is refused (EBS accepts one per snapshot)."""

    def __init__(self, describes_until_completed: int) -> None:
        self.describes_until_completed = describes_until_completed
        self.completions: dict[str, int] = {}
        self._describes_since: dict[str, int] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.ec2.models.elastic_block_store import EBSBackend as EC2SnapshotsBackend

        from diskport_emulator.services.ebs import StrictEbsBackend

        complete_snapshot, describe_snapshots = (
            StrictEbsBackend.strict_complete_snapshot,
            EC2SnapshotsBackend.describe_snapshots,
        )
        # The strict EBS itself would complete the snapshot only after an hour: the describes below decide.
        monkeypatch.setenv("DISKPORT_EBS_COMPLETION_SECONDS", "3600")

        def complete(backend: StrictEbsBackend, *, snapshot_id: str, **kwargs: Any) -> str:
            self.completions[snapshot_id] = self.completions.get(snapshot_id, 0) + 1
            if self.completions[snapshot_id] > 1:
                raise ClientError(
                    {"Error": {"Code": "ValidationException", "Message": "The snapshot is already completed."}},
                    "CompleteSnapshot",
                )
            self._describes_since[snapshot_id] = 0
            return str(complete_snapshot(backend, snapshot_id=snapshot_id, **kwargs))

        def describe(backend: Any, *args: Any, **kwargs: Any) -> Any:
            found = describe_snapshots(backend, *args, **kwargs)
            for snapshot in found:
                if snapshot.id in self._describes_since:
                    self._describes_since[snapshot.id] += 1
                    if self._describes_since[snapshot.id] >= self.describes_until_completed:
                        snapshot.status = "completed"
            return found

        monkeypatch.setattr(StrictEbsBackend, "strict_complete_snapshot", complete)
        monkeypatch.setattr(EC2SnapshotsBackend, "describe_snapshots", describe)


@pytest.fixture
def completing_snapshots(monkeypatch: pytest.MonkeyPatch) -> CompletingSnapshots:
    completing = CompletingSnapshots(describes_until_completed=3)
    completing.install(monkeypatch)
    # Register waits no time for completion: its first run gives up while the snapshot is still completing.
    monkeypatch.setenv("SNAPSHOT_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    return completing


@pytest.fixture
def complete_snapshot_requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The headers of every CompleteSnapshot request as sent on the wire."""
    serve = BotocoreStubber.__call__
    sent: list[dict[str, str]] = []

    def record(stubber: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        if stubber.enabled and event_name == "before-send.ebs.CompleteSnapshot":
            sent.append({str(name).lower(): _text(value) for name, value in request.headers.items()})
        return serve(stubber, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", record)
    return sent


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_register_retry_while_ebs_completes_the_snapshot_does_not_complete_it_again(
    importer: Importer, image_files: dict[str, ImageFile], completing_snapshots: CompletingSnapshots
) -> None:
    # When an import's Register finds the snapshot still completing and is retried
    job = importer.import_file(image_files["qcow2"].path, "disk.qcow2")

    # Then the import succeeds, having sent CompleteSnapshot exactly once
    assert job["status"] == "SUCCESS", job
    image = importer.image_record(job["entities"]["image_id"])
    assert completing_snapshots.completions == {image["snapshot_id"]: 1}
    assert importer.snapshots()[image["snapshot_id"]] == "completed"


def test_a_disk_of_zeros_is_sealed_with_no_block_and_no_checksum_of_nothing(
    importer: Importer, complete_snapshot_requests: list[dict[str, str]]
) -> None:
    # When a raw disk holding only zeros is imported
    job = importer.import_file(bytes(3 * MIB), "zeros.raw")

    # Then the image is active, its snapshot holds no block
    assert job["status"] == "SUCCESS", job
    image = importer.image_record(job["entities"]["image_id"])
    assert importer.snapshot_blocks(image["snapshot_id"]) == {}
    # and CompleteSnapshot said so with a block count of 0 and no aggregate checksum
    (headers,) = complete_snapshot_requests
    assert headers["x-amz-changedblockscount"] == "0"
    assert not {"x-amz-checksum", "x-amz-checksum-algorithm", "x-amz-checksum-aggregation-method"} & set(headers)


def test_a_snapshot_ebs_will_not_delete_leaves_the_failed_import_ended_and_its_image_killed(
    importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given EBS refuses to delete snapshots (in use, say); the order of MarkFailed's changes is recorded
    order: list[str] = []
    kill = ImageStore.kill

    def killed(store: ImageStore, image: Any) -> bool:
        order.append("image killed")
        return kill(store, image)

    def refused(store: SnapshotStore, snapshot_id: str) -> None:
        order.append("snapshot deletion tried")
        # What the store makes of EBS's InvalidSnapshot.InUse (tests/unit/stores/test_aws_errors.py).
        raise SnapshotKeptError(snapshot_id, "InvalidSnapshot.InUse")

    monkeypatch.setattr(ImageStore, "kill", killed)
    monkeypatch.setattr(SnapshotStore, "delete", refused)

    # When an import fails after its snapshot was started: EBS refuses the blocks
    def refuse_blocks(store: SnapshotStore, snapshot_id: str, block: Any) -> None:
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad block"}}, "PutSnapshotBlock")

    monkeypatch.setattr(SnapshotStore, "put_block", refuse_blocks)
    job = importer.import_file(b"\x5a" * MIB, "data.raw")

    # Then the job ends FAIL with the file's fault, and the image was killed before the deletion was tried
    assert job["status"] == "FAIL", job
    assert order[:2] == ["image killed", "snapshot deletion tried"], order
    assert importer.image_record(job["entities"]["image_id"])["status"] == "killed"
    # and the work files are gone all the same
    assert importer.work_files() == []
