"""The engine reads every supported format exactly as `qemu-img convert -O raw` does."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
import tracemalloc
from pathlib import Path

import pytest
from diskport.engine import BLOCK_SIZE, Block, LocalFileSource, open_disk

from .images import ImageCase, requires_qemu_img, run

pytestmark = requires_qemu_img

MIB = 1024 * 1024


def _oracle_blocks(case: ImageCase) -> dict[int, bytes]:
    blocks: dict[int, bytes] = {}
    with case.oracle.open("rb") as oracle:
        index = 0
        while chunk := oracle.read(BLOCK_SIZE):
            if any(chunk):
                blocks[index] = chunk.ljust(BLOCK_SIZE, b"\0")
            index += 1
    return blocks


def test_format_and_subformat_are_told_by_content(image_case: ImageCase) -> None:
    # Given an image whose file name says nothing about its format
    # When it is opened
    with LocalFileSource(image_case.path) as source, open_disk(source) as disk:
        # Then the engine names the format and sub-format qemu-img wrote
        assert (disk.format, disk.subformat) == (image_case.format, image_case.subformat)
        assert disk.virtual_size == image_case.oracle.stat().st_size


def test_non_zero_blocks_match_qemu_img_byte_for_byte(image_case: ImageCase) -> None:
    # Given an image and qemu-img's raw conversion of it
    expected = _oracle_blocks(image_case)
    # When every block of the virtual disk is read
    with LocalFileSource(image_case.path) as source, open_disk(source) as disk:
        end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        blocks = list(disk.iter_blocks(0, end))
    # Then exactly the non-zero blocks come out, in order, equal to qemu-img's, with the EBS checksum
    assert [block.index for block in blocks] == sorted(expected)
    for block in blocks:
        assert block.data == expected[block.index], f"block {block.index} differs"
        assert block.checksum == base64.b64encode(hashlib.sha256(expected[block.index]).digest()).decode()


def test_allocated_ranges_cover_every_non_zero_byte(image_case: ImageCase) -> None:
    # Given an image
    with LocalFileSource(image_case.path) as source, open_disk(source) as disk:
        # When its allocation map is read from the format's tables
        ranges = disk.allocated_ranges()
    # Then the ranges are sorted, disjoint, and hold every non-zero byte qemu-img reads
    assert all(start < end for start, end in ranges)
    assert all(previous[1] < following[0] for previous, following in itertools.pairwise(ranges))
    oracle = image_case.oracle.read_bytes()
    covered = bytearray(len(oracle))
    for start, end in ranges:
        covered[start:end] = b"\1" * (min(end, len(oracle)) - start)
    uncovered_non_zero = [
        offset for offset in range(0, len(oracle), 512) if any(oracle[offset : offset + 512]) and not covered[offset]
    ]
    assert uncovered_non_zero == []


def test_read_at_unaligned_offsets_matches_qemu_img(image_case: ImageCase) -> None:
    # Given an image and qemu-img's raw conversion of it
    oracle = image_case.oracle.read_bytes()
    with LocalFileSource(image_case.path) as source, open_disk(source) as disk:
        # When ranges that start and end mid-cluster are read, including past the end of the disk
        for offset, length in [
            (0, 4096),
            (0x1230, 10_000),
            (1024 * 1024 + 100, 700_000),
            (len(oracle) - 1_234, 5_000),
        ]:
            # Then the bytes are qemu-img's, cut at the end of the disk
            assert disk.read(offset, length) == oracle[offset : offset + length], (offset, length)


def test_blocks_of_a_sub_range_are_the_same_blocks_as_in_a_full_pass(image_cases: dict[str, ImageCase]) -> None:
    # Given an image read whole once
    case = image_cases["qcow2-v3-zstd"]
    with LocalFileSource(case.path) as source, open_disk(source) as disk:
        end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        everything = {block.index: block for block in disk.iter_blocks(0, end)}
        # When a chunk in the middle, and a chunk ending at the virtual size, are read on their own
        middle = list(disk.iter_blocks(2 * BLOCK_SIZE, 8 * BLOCK_SIZE))
        tail = list(disk.iter_blocks(end - 2 * BLOCK_SIZE, disk.virtual_size))
    # Then each holds exactly the full pass's blocks of its range
    assert middle == [everything[index] for index in range(2, 8) if index in everything]
    assert tail == [
        everything[index] for index in range(end // BLOCK_SIZE - 2, end // BLOCK_SIZE) if index in everything
    ]


@pytest.mark.parametrize(
    ("start", "end"), [(1, BLOCK_SIZE), (0, BLOCK_SIZE + 1), (-BLOCK_SIZE, BLOCK_SIZE), (0, 1 << 40)]
)
def test_block_ranges_must_be_block_aligned_and_inside_the_disk(
    start: int, end: int, image_cases: dict[str, ImageCase]
) -> None:
    with LocalFileSource(image_cases["raw"].path) as source, open_disk(source) as disk, pytest.raises(ValueError):
        list(disk.iter_blocks(start, end))


SPARSE_CASES = [
    ("qcow2", "2T", ()),
    ("vmdk", "128G", ()),
    ("vpc", "2000G", ("-o", "subformat=dynamic")),
    ("vhdx", "2T", ()),
    ("vdi", "2T", ()),
]


@pytest.mark.parametrize(("qemu_format", "size", "options"), SPARSE_CASES)
def test_reading_a_sparse_disk_costs_time_and_memory_for_its_data_not_its_size(
    qemu_format: str, size: str, options: tuple[str, ...], tmp_path: Path
) -> None:
    # Given a disk of terabytes holding a few MiB of data, at its start, its middle and its end
    image = tmp_path / f"sparse.{qemu_format}"
    run("qemu-img", "create", "-q", "-f", qemu_format, *options, image, size)
    with LocalFileSource(image) as source, open_disk(source) as disk:
        virtual_size = disk.virtual_size
    commands = [f"write -P 0x5a {offset} 1M" for offset in (0, virtual_size // 2 // MIB * MIB, virtual_size - MIB)]
    for command in commands:
        run("qemu-io", "-f", qemu_format, "-c", command, image)
    # When its allocation map and every non-zero block are read (timed on its own: tracing memory slows Python)
    started = time.perf_counter()
    ranges, blocks = _map_and_read(image)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        _map_and_read(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then only the data is read: 3 MiB in 6 blocks, in a few ranges, quickly and in little memory
    assert len(blocks) == 6
    assert all(block.data == b"\x5a" * BLOCK_SIZE for block in blocks)
    assert sum(end - start for start, end in ranges) < 1 << 30
    assert elapsed < 5
    assert peak < 48 * MIB


def _map_and_read(image: Path) -> tuple[list[tuple[int, int]], list[Block]]:
    with LocalFileSource(image) as source, open_disk(source) as disk:
        ranges = disk.allocated_ranges()
        return ranges, list(disk.iter_blocks(0, -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE))


def test_read_refuses_more_than_64_mib_at_once(image_cases: dict[str, ImageCase]) -> None:
    with LocalFileSource(image_cases["raw"].path) as source, open_disk(source) as disk, pytest.raises(ValueError):
        disk.read(0, 64 * MIB + 1)


def test_a_qcow2_with_internal_snapshots_reads_its_current_state(tmp_path: Path) -> None:
    # Given a qcow2 with an internal snapshot, written over after the snapshot was taken
    image = tmp_path / "snapshotted.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", image, "8M")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 3M", image)
    run("qemu-img", "snapshot", "-c", "before", image)
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x22 1M 1M", "-c", "write -P 0x33 6M 64k", image)
    oracle = tmp_path / "oracle.raw"
    run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, oracle)
    # When its blocks are read
    with LocalFileSource(image) as source, open_disk(source) as disk:
        blocks = {block.index: block.data for block in disk.iter_blocks(0, disk.virtual_size)}
    # Then they are the current state, as qemu-img reads it, not the snapshot's
    expected = oracle.read_bytes()
    assert sorted(blocks) == [0, 1, 2, 3, 4, 5, 12]
    assert all(data == expected[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE] for index, data in blocks.items())


def test_vmdk_zeroed_grains_read_as_zeros(tmp_path: Path) -> None:
    # Given a monolithicSparse VMDK using zeroed-grain entries, one written grain zeroed after the fact
    image = tmp_path / "zeroed.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", image, "4M")
    run("qemu-io", "-f", "vmdk", "-c", "write -P 0x44 0 1M", "-c", "write -z 512k 64k", image)
    oracle = tmp_path / "oracle.raw"
    run("qemu-img", "convert", "-f", "vmdk", "-O", "raw", image, oracle)
    # When it is read, then the zeroed grain is zeros and the rest is the data, as qemu-img reads it
    with LocalFileSource(image) as source, open_disk(source) as disk:
        assert disk.read(0, 2 * MIB) == oracle.read_bytes()[: 2 * MIB]
        assert disk.read(512 * 1024, 64 * 1024) == bytes(64 * 1024)
