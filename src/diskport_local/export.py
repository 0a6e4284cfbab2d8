"""Write an imported image's EBS snapshot back out as a raw disk file, so a user can check the import.

The snapshot is read with the EBS direct APIs (ListSnapshotBlocks, GetSnapshotBlock). Blocks are always
524,288 bytes (moto reports 512, so the size is never taken from the answer). The file is `virtual_size`
bytes long and sparse: blocks the snapshot does not hold read as zeros, as they would on a volume.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from diskport.errors import DiskportError
from diskport.stores import aws

EBS_BLOCK_BYTES = 524_288
PARALLEL_READS = 8
LIST_PAGE_SIZE = 10_000  # the largest page ListSnapshotBlocks gives


class ExportError(DiskportError):
    """The snapshot could not be read back whole and intact."""

    code = "IMG.0061"
    http_status = 500


@dataclass(frozen=True)
class ExportResult:
    blocks_written: int
    bytes_written: int
    file_size: int


def export_snapshot(
    snapshot_id: str,
    virtual_size: int,
    destination: Path,
    *,
    ebs: Any | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the snapshot's first `virtual_size` bytes to `destination`; nothing is left behind if that fails.

    The disk is written to a hidden file beside `destination`, which takes its name only once every block is in:
    an existing file is never touched by a failed export, and is replaced only with `overwrite`.
    Progress is reported as (bytes of the disk covered so far, virtual_size): blocks come in index order.
    """
    ebs = ebs if ebs is not None else aws.client("ebs")
    if destination.exists() and not overwrite:
        raise ExportError(f"{destination} exists: it is replaced only when asked to (--force).", code="IMG.0001")
    if not destination.parent.is_dir():
        raise ExportError(f"The directory {destination.parent} does not exist.", code="IMG.0001")
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(descriptor, virtual_size)

        def copy_block(block: tuple[int, str]) -> int:
            index, token = block
            data = read_snapshot_block(ebs, snapshot_id, index, token)
            data = data[: max(0, virtual_size - index * EBS_BLOCK_BYTES)]
            os.pwrite(descriptor, data, index * EBS_BLOCK_BYTES)
            return len(data)

        blocks_written = bytes_written = 0
        inside_disk = (
            block for block in snapshot_block_tokens(ebs, snapshot_id) if block[0] * EBS_BLOCK_BYTES < virtual_size
        )
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            # A window at a time: neither the block list of a large snapshot nor its data is ever all in memory.
            while window := list(islice(inside_disk, PARALLEL_READS * 4)):
                for written in pool.map(copy_block, window):
                    blocks_written += 1
                    bytes_written += written
                if on_progress is not None:
                    on_progress(min(virtual_size, (window[-1][0] + 1) * EBS_BLOCK_BYTES), virtual_size)
        if on_progress is not None:
            on_progress(virtual_size, virtual_size)
        os.close(descriptor)
        descriptor = -1
        if overwrite:
            os.replace(partial, destination)
        else:
            os.link(partial, destination)  # fails rather than replace a file that appeared meanwhile
            partial.unlink()
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(blocks_written=blocks_written, bytes_written=bytes_written, file_size=virtual_size)


def snapshot_block_tokens(ebs: Any, snapshot_id: str) -> Iterator[tuple[int, str]]:
    """(block index, block token) of every block the snapshot holds, page by page."""
    request: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": LIST_PAGE_SIZE}
    while True:
        page = ebs.list_snapshot_blocks(**request)
        for block in page.get("Blocks", []):
            yield int(block["BlockIndex"]), str(block["BlockToken"])
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


def read_snapshot_block(ebs: Any, snapshot_id: str, index: int, token: str) -> bytes:
    answer = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockToken=token)
    data: bytes = answer["BlockData"].read()
    if answer.get("ChecksumAlgorithm") == "SHA256" and answer.get("Checksum"):
        actual = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        if actual != answer["Checksum"]:
            raise ExportError(f"Block {index} of {snapshot_id} does not match its SHA-256 checksum.")
    return data


def snapshot_contents(snapshot_id: str, *, ebs: Any | None = None) -> dict[int, bytes]:
    """Every block the snapshot holds, by index: for comparing a small import with `nonzero_blocks` of its disk."""
    ebs = ebs if ebs is not None else aws.client("ebs")
    return {
        index: read_snapshot_block(ebs, snapshot_id, index, token)
        for index, token in snapshot_block_tokens(ebs, snapshot_id)
    }


def nonzero_blocks(raw_disk: Path) -> dict[int, bytes]:
    """The non-zero 512 KiB blocks of a raw disk file, the last one zero-padded: what its snapshot must hold."""
    blocks = {}
    with raw_disk.open("rb") as file:
        index = 0
        while data := file.read(EBS_BLOCK_BYTES):
            data = data.ljust(EBS_BLOCK_BYTES, b"\0")
            if data.count(0) != EBS_BLOCK_BYTES:
                blocks[index] = data
            index += 1
    return blocks
