"""The engine reads every supported format exactly as `qemu-img convert -O raw` does."""

from __future__ import annotations

import base64
import hashlib
import itertools

from diskport.engine import BLOCK_SIZE, LocalFileSource, open_disk

from .images import ImageCase


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
