"""Every header and table the parsers read, cut short anywhere: the engine refuses with its own error, never crashes.

The structures are found by watching the reads each format's parser makes while it opens and maps a valid seed
image; the file is then cut at the start of each of them, inside it (every few bytes over its first 64) and one
byte before its end. VHDX regions, whose lengths the region table declares, are also shrunk in place.
"""

from __future__ import annotations

import struct

import pytest
from diskport.engine import InspectionLimits, open_disk
from diskport.engine.crc32c import crc32c

from .exercise import exercise
from .seeds import SEED_NAMES, BytesSource

KIB = 1024
REGION_TABLE_OFFSET = 192 * KIB
METADATA_REGION_LE = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
BAT_REGION_LE = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
PROJECT_OUTCOMES = {"accepted", "IMG.0057", "IMG.0072"}


class RecordingSource(BytesSource):
    """An in-memory image that notes every (offset, length) read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return super().read_at(offset, length)


def structures_read(data: bytes) -> set[tuple[int, int]]:
    """The (offset, length) of every header and table read while the image is opened and mapped."""
    source = RecordingSource(data)
    with open_disk(source, limits=InspectionLimits()) as disk:
        disk.allocated_ranges()
    return {(offset, length) for offset, length in source.reads if offset < len(data)}


def cut_points(offset: int, length: int, file_size: int) -> set[int]:
    inside = set(range(offset, offset + min(length, 64), 3)) | {offset + length - 1, offset + length // 2}
    return {point for point in inside if 0 <= point < file_size}


def outcome_of(data: bytes) -> str:
    try:
        return exercise(data)
    except Exception as error:
        return f"crash: {type(error).__name__}: {error}"


@pytest.mark.parametrize("seed_name", SEED_NAMES)
def test_every_structure_cut_short_is_refused_with_the_projects_error(seeds: dict[str, bytes], seed_name: str) -> None:
    # Given a valid seed image and every structure its parser reads
    data = seeds[seed_name]
    structures = structures_read(data)
    assert structures, "the parser reads at least its header"
    points = sorted({point for offset, length in structures for point in cut_points(offset, length, len(data))})
    # When the file is cut at every point inside each structure
    outcomes = {point: outcome_of(data[:point]) for point in points}
    # Then each cut file is read or refused with the project's error, nothing else
    crashes = {point: outcome for point, outcome in outcomes.items() if outcome not in PROJECT_OUTCOMES}
    assert not crashes, crashes


def _with_region_length(data: bytes, region_le: bytes, length: int) -> bytes:
    image = bytearray(data)
    table = REGION_TABLE_OFFSET
    position = bytes(image[table : table + 64 * KIB]).index(region_le)
    struct.pack_into("<I", image, table + position + 24, length)
    image[table + 4 : table + 8] = bytes(4)
    struct.pack_into("<I", image, table + 4, crc32c(bytes(image[table : table + 64 * KIB])))
    return bytes(image)


@pytest.mark.parametrize("region_le", [METADATA_REGION_LE, BAT_REGION_LE], ids=["metadata", "bat"])
def test_a_vhdx_region_shrunk_to_any_length_is_refused_with_the_projects_error(
    seeds: dict[str, bytes], region_le: bytes
) -> None:
    # Given a valid VHDX whose region table declares a region of 0 to 64 bytes, or a few sizes around its tables
    lengths = [*range(65), 4 * KIB, 64 * KIB - 1]
    # When each is opened and read, then it is read or refused with the project's error (a metadata region of 8 to
    # 11 bytes once escaped as struct.error; a BAT region of 8 bytes holds the one entry of this disk)
    outcomes = {length: outcome_of(_with_region_length(seeds["vhdx-dynamic"], region_le, length)) for length in lengths}
    crashes = {length: outcome for length, outcome in outcomes.items() if outcome not in PROJECT_OUTCOMES}
    assert not crashes, crashes
