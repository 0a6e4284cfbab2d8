"""`diskport export` writes a snapshot back out as the raw disk it holds."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from diskport_emulator import install_strict_services
from diskport_local.export import EBS_BLOCK_BYTES, ExportError, export_snapshot


@pytest.fixture
def ebs() -> Iterator[Any]:
    install_strict_services()
    with mock_aws():
        yield boto3.client("ebs", region_name="us-east-1")


def checksum(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def snapshot_with(ebs: Any, blocks: dict[int, bytes]) -> str:
    snapshot_id = str(ebs.start_snapshot(VolumeSize=1)["SnapshotId"])
    for index, data in blocks.items():
        ebs.put_snapshot_block(
            SnapshotId=snapshot_id,
            BlockIndex=index,
            BlockData=data,
            DataLength=len(data),
            Checksum=checksum(data),
            ChecksumAlgorithm="SHA256",
        )
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=len(blocks))
    return snapshot_id


def block_of(byte: int) -> bytes:
    return bytes([byte]) * EBS_BLOCK_BYTES


def test_the_file_holds_each_block_at_its_offset_and_zeros_elsewhere(ebs: Any, tmp_path: Path) -> None:
    # Given a snapshot with data in blocks 0 and 3, and a disk that ends half-way into block 3
    snapshot_id = snapshot_with(ebs, {0: block_of(0xA1), 3: block_of(0xB2)})
    virtual_size = 3 * EBS_BLOCK_BYTES + 1000
    # When
    result = export_snapshot(snapshot_id, virtual_size, tmp_path / "disk.raw", ebs=ebs)
    # Then the file is the disk: block 0, two blocks of zeros, then the part of block 3 inside the disk
    expected = block_of(0xA1) + bytes(2 * EBS_BLOCK_BYTES) + bytes([0xB2]) * 1000
    assert (tmp_path / "disk.raw").read_bytes() == expected
    assert (result.blocks_written, result.bytes_written, result.file_size) == (2, EBS_BLOCK_BYTES + 1000, virtual_size)


def test_the_holes_are_left_sparse(ebs: Any, tmp_path: Path) -> None:
    snapshot_id = snapshot_with(ebs, {0: block_of(1)})
    export_snapshot(snapshot_id, 64 * EBS_BLOCK_BYTES, tmp_path / "disk.raw", ebs=ebs)
    stat = (tmp_path / "disk.raw").stat()
    assert stat.st_size == 64 * EBS_BLOCK_BYTES
    assert stat.st_blocks * 512 < 8 * EBS_BLOCK_BYTES


class CorruptingEbs:
    """The EBS client answering GetSnapshotBlock for one block with a checksum that is not its data's.

    A strict EBS refuses such a block when it is written, so the damage is done on the way back.
    """

    def __init__(self, ebs: Any, corrupt_index: int) -> None:
        self._ebs = ebs
        self._corrupt_index = corrupt_index

    def list_snapshot_blocks(self, **request: Any) -> Any:
        return self._ebs.list_snapshot_blocks(**request)

    def get_snapshot_block(self, **request: Any) -> Any:
        answer = self._ebs.get_snapshot_block(**request)
        if request["BlockIndex"] == self._corrupt_index:
            answer["Checksum"] = checksum(b"not the data")
        return answer


def test_a_block_that_does_not_match_its_checksum_stops_the_export_and_leaves_no_file(ebs: Any, tmp_path: Path) -> None:
    snapshot_id = snapshot_with(ebs, {0: block_of(1), 1: block_of(2)})
    with pytest.raises(ExportError, match="Block 1"):
        export_snapshot(
            snapshot_id, 2 * EBS_BLOCK_BYTES, tmp_path / "disk.raw", ebs=CorruptingEbs(ebs, corrupt_index=1)
        )
    assert not (tmp_path / "disk.raw").exists()


class PagedEbs:
    """The EBS client answering ListSnapshotBlocks one block per page, as a large snapshot would page."""

    def __init__(self, ebs: Any) -> None:
        self._ebs = ebs
        self.pages = 0

    def list_snapshot_blocks(self, **request: Any) -> dict[str, Any]:
        self.pages += 1
        blocks = self._ebs.list_snapshot_blocks(SnapshotId=request["SnapshotId"])["Blocks"]
        start = int(request.get("NextToken", 0))
        page: dict[str, Any] = {"Blocks": blocks[start : start + 1], "BlockSize": 512}
        if start + 1 < len(blocks):
            page["NextToken"] = str(start + 1)
        return page

    def get_snapshot_block(self, **request: Any) -> Any:
        return self._ebs.get_snapshot_block(**request)


def test_every_page_of_blocks_is_read(ebs: Any, tmp_path: Path) -> None:
    snapshot_id = snapshot_with(ebs, {0: block_of(1), 1: block_of(2), 5: block_of(3)})
    paged = PagedEbs(ebs)
    progress: list[tuple[int, int]] = []
    result = export_snapshot(
        snapshot_id,
        6 * EBS_BLOCK_BYTES,
        tmp_path / "disk.raw",
        ebs=paged,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert paged.pages == 3
    assert result.blocks_written == 3
    assert progress[-1] == (6 * EBS_BLOCK_BYTES, 6 * EBS_BLOCK_BYTES)
    data = (tmp_path / "disk.raw").read_bytes()
    assert data[5 * EBS_BLOCK_BYTES :] == block_of(3)


def test_a_failed_export_leaves_the_file_it_would_have_replaced_untouched(ebs: Any, tmp_path: Path) -> None:
    # Given an existing file, and a snapshot whose second block is corrupt
    existing = tmp_path / "disk.raw"
    existing.write_bytes(b"an earlier export")
    snapshot_id = snapshot_with(ebs, {0: block_of(1), 1: block_of(2)})
    # When an export asked to overwrite it fails
    with pytest.raises(ExportError, match="Block 1"):
        export_snapshot(
            snapshot_id, 2 * EBS_BLOCK_BYTES, existing, ebs=CorruptingEbs(ebs, corrupt_index=1), overwrite=True
        )
    # Then the file is as it was, and nothing else was left in its directory
    assert existing.read_bytes() == b"an earlier export"
    assert list(tmp_path.iterdir()) == [existing]


def test_an_existing_file_is_replaced_only_when_asked(ebs: Any, tmp_path: Path) -> None:
    existing = tmp_path / "disk.raw"
    existing.write_bytes(b"an earlier export")
    snapshot_id = snapshot_with(ebs, {0: block_of(1)})
    with pytest.raises(ExportError, match="exists"):
        export_snapshot(snapshot_id, EBS_BLOCK_BYTES, existing, ebs=ebs)
    assert existing.read_bytes() == b"an earlier export"
    export_snapshot(snapshot_id, EBS_BLOCK_BYTES, existing, ebs=ebs, overwrite=True)
    assert existing.read_bytes() == block_of(1)
