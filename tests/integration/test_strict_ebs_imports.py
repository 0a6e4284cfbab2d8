"""Imports against local mode's strict EBS: its quotas and delays slow an import down, never spoil it."""

from __future__ import annotations

from typing import Any

import pytest

from diskport_emulator.services.ebs import strict_ebs_backends

ACCOUNT_ID = "123456789012"  # moto's default account


def test_an_import_throttled_by_ebs_still_ends_success_with_exactly_its_blocks(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an EBS that accepts two PutSnapshotBlock requests a second per snapshot, far below the import's pace
    monkeypatch.setenv("DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT", "2")
    ebs = strict_ebs_backends[ACCOUNT_ID]["us-east-1"]
    throttled_before = ebs.throttled_requests
    image_file = image_files["qcow2"]

    # When the file is imported
    job = importer.import_file(image_file.path, "disks/throttled.qcow2")

    # Then EBS did throttle it, and the import still succeeded with the disk's blocks, byte for byte
    assert ebs.throttled_requests > throttled_before
    assert job["status"] == "SUCCESS", job
    image = importer.image(job["entities"]["image_id"])
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(image_file.oracle)


def test_an_import_waits_out_a_snapshot_that_does_not_exist_yet_and_one_that_completes_later(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an EBS on which a new snapshot answers "does not exist" for a moment and completes a moment later
    monkeypatch.setenv("DISKPORT_EBS_NOT_FOUND_SECONDS", "0.5")
    monkeypatch.setenv("DISKPORT_EBS_COMPLETION_SECONDS", "0.5")
    image_file = image_files["vmdk"]

    # When the file is imported
    job = importer.import_file(image_file.path, "disks/late.vmdk")

    # Then the import succeeded with the disk's blocks
    assert job["status"] == "SUCCESS", job
    image = importer.image(job["entities"]["image_id"])
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(image_file.oracle)
