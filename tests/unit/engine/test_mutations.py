"""Property: whatever a header or table says, only the project's own errors escape, and memory stays bounded.

Valid images are mutated where their metadata lives (every byte of the file that is not disk data: headers,
footers, L1/L2 tables, grain directories and tables, BATs, block maps, region and metadata tables).
"""

from __future__ import annotations

import itertools
import os
import struct
import tracemalloc

import pytest
from diskport.engine import BLOCK_SIZE, DiskError, LocalFileSource, SegmentKind, open_disk
from diskport.engine.formats.vmdk import parse_descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .images import RECIPES, ImageCase

MIB = 1024 * 1024
MEMORY_BOUND = 64 * MIB
BLOCKS_READ_PER_EXAMPLE = 48
EXAMPLES = int(os.environ.get("DISKPORT_MUTATION_EXAMPLES", "20"))

INTERESTING_INTEGERS = [0, 1, 2, 0x1FF, 0x200, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 31, 1 << 32, 1 << 40, 1 << 62, 1 << 63]


class PatchedSource:
    """A file seen through in-memory patches: mutations without copying the image."""

    def __init__(self, base: LocalFileSource, patches: list[tuple[int, bytes]]) -> None:
        self._base = base
        self._patches = patches

    @property
    def size(self) -> int:
        return self._base.size

    def read_at(self, offset: int, length: int) -> bytes:
        data = bytearray(self._base.read_at(offset, length))
        end = offset + len(data)
        for patch_offset, patch_bytes in self._patches:
            overlap_start = max(offset, patch_offset)
            overlap_end = min(end, patch_offset + len(patch_bytes))
            if overlap_start < overlap_end:
                data[overlap_start - offset : overlap_end - offset] = patch_bytes[
                    overlap_start - patch_offset : overlap_end - patch_offset
                ]
        return bytes(data)


def metadata_areas(case: ImageCase) -> list[tuple[int, int]]:
    """File ranges that hold no disk data: where headers and tables live (each capped to 64 KiB)."""
    with LocalFileSource(case.path) as source, open_disk(source) as disk:
        data_ranges = sorted(
            (segment.file_offset, segment.file_offset + max(segment.length, segment.stored_length))
            for segment in disk.segments(0, disk.virtual_size)
            if segment.kind is not SegmentKind.ZERO
        )
        file_size = source.size
    areas: list[tuple[int, int]] = []
    position = 0
    for start, end in [*data_ranges, (file_size, file_size)]:
        if start > position:
            areas.append((position, min(start, position + 64 * 1024)))
        position = max(position, end)
    # Footers sit at the end of the file, after the last data.
    areas.append((max(0, file_size - 1536), file_size))
    return areas


def mutation(areas: list[tuple[int, int]]) -> st.SearchStrategy[tuple[int, bytes]]:
    def at_offset(area_and_fraction: tuple[tuple[int, int], float]) -> int:
        (start, end), fraction = area_and_fraction
        return start + int((end - start - 1) * fraction)

    offsets = st.tuples(st.sampled_from(areas), st.floats(0, 1)).map(at_offset)
    values = st.one_of(
        st.binary(min_size=1, max_size=8),
        st.tuples(st.sampled_from(INTERESTING_INTEGERS), st.sampled_from(["<I", ">I", "<Q", ">Q"])).map(
            lambda pair: struct.pack(pair[1], pair[0] & (0xFFFF_FFFF if pair[1][1] == "I" else (1 << 64) - 1))
        ),
    )
    return st.tuples(offsets, values)


def exercise(source: PatchedSource) -> None:
    """What the pipeline does with an image: open it, map it, read its first blocks."""
    with open_disk(source) as disk:
        disk.allocated_ranges()
        end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        for _block in itertools.islice(disk.iter_blocks(0, end), BLOCKS_READ_PER_EXAMPLE):
            pass
        disk.read(max(0, disk.virtual_size - 4096), 8192)


@pytest.mark.parametrize("recipe_name", [recipe.name for recipe in RECIPES if recipe.format != "raw"])
def test_mutated_metadata_only_raises_diskport_errors_in_bounded_memory(
    recipe_name: str, image_cases: dict[str, ImageCase]
) -> None:
    case = image_cases[recipe_name]
    areas = metadata_areas(case)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(patches=st.lists(mutation(areas), min_size=1, max_size=4))
    def property_holds(patches: list[tuple[int, bytes]]) -> None:
        # Given a valid image with a few metadata bytes changed
        with LocalFileSource(case.path) as base:
            source = PatchedSource(base, patches)
            tracemalloc.start()
            try:
                # When it is opened, mapped and read
                exercise(source)
            except DiskError:
                pass  # Then it is either accepted, or refused with the project's own error...
            finally:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            # ...and memory never depends on what the header claims
            assert peak < MEMORY_BOUND, f"peak {peak} bytes"

    property_holds()


@settings(max_examples=EXAMPLES * 10, deadline=None, database=None)
@given(text=st.text(max_size=2_000))
def test_any_descriptor_text_parses_without_error(text: str) -> None:
    # Given any text where a VMDK descriptor should be, when it is parsed, then a descriptor comes back
    descriptor = parse_descriptor(text)
    assert all(isinstance(name, str) for _type, name in descriptor.extents)


@settings(max_examples=EXAMPLES * 5, deadline=None, database=None)
@given(content=st.binary(min_size=1, max_size=70_000))
def test_any_short_file_opens_or_is_refused_with_a_diskport_error(content: bytes) -> None:
    # Given arbitrary bytes, sometimes behind a real signature
    for signature in (b"", b"QFI\xfb\x00\x00\x00\x03", b"KDMV", b"vhdxfile", b"conectix", b"# Disk DescriptorFile\n"):
        source = BytesSource(signature + content)
        # When they are opened and read, then they are a disk, or a refusal the project knows
        try:
            with open_disk(source) as disk:
                disk.allocated_ranges()
                list(itertools.islice(disk.iter_blocks(0, -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE), 4))
        except DiskError:
            pass


class BytesSource:
    def __init__(self, content: bytes) -> None:
        self._content = content

    @property
    def size(self) -> int:
        return len(self._content)

    def read_at(self, offset: int, length: int) -> bytes:
        return self._content[offset : offset + length]
