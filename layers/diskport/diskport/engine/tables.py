"""Tables of entries, as every format keeps them: decoded, searched for runs, cached, and walked.

A format's tables map its units (clusters, grains, blocks) of the virtual disk to the file. What the formats share is
here, written once: decoding a table into a compact array; the search for runs of entries that mean "no data"
(`end_of_run`) and of entries naming contiguous stored units (`end_of_contiguous_run`); the cache of second-level
tables (`TableCache`); the walk of a directory of second-level tables (`TwoLevelTables`: qcow2's L1 and L2, VMDK's
grain directory and grain tables) and of a flat table of blocks (`BlockTableLayout`: VHD, VHDX, VDI). What an entry
means, and every check of it, stays with its format.
"""

from __future__ import annotations

import abc
import array
import functools
import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator

from .inspection import MetadataReader
from .layout import Segment, stored, zero

# What keeping one decoded table costs beyond its entries: the array object, its cache slot and key (tracemalloc
# measured about 233 bytes for a one-entry table). A cache sized by entry bytes alone kept millions of tiny tables.
DECODED_TABLE_OVERHEAD_BYTES = 256


def tables_kept(cache_bytes: int, table_bytes: int) -> int:
    """How many decoded tables of `table_bytes` entry bytes fit a cache of `cache_bytes`, counting what each costs."""
    return max(2, cache_bytes // (table_bytes + DECODED_TABLE_OVERHEAD_BYTES))


def unpack_table(data: bytes, entry_size: int, *, big_endian: bool) -> array.array[int]:
    """A table of unsigned 32- or 64-bit integers, kept as a compact array (8 bytes an entry, not a Python int)."""
    table = array.array("Q" if entry_size == 8 else "I")
    if table.itemsize != entry_size:
        raise RuntimeError(f"this platform has no {entry_size}-byte unsigned array type")
    table.frombytes(data[: len(data) - len(data) % entry_size])
    if big_endian != (sys.byteorder == "big"):
        table.byteswap()
    return table


_NOT_ZERO_BYTE = re.compile(rb"[^\x00]")
_NOT_FF_BYTE = re.compile(rb"[^\xff]")
# A run is checked a growing chunk at a time: short runs cost little, long ones a few large copies and compares.
_FIRST_CHUNK_ENTRIES = 16
_LARGEST_CHUNK_BYTES = 1024 * 1024
_FILLS = {0x00: bytes(_LARGEST_CHUNK_BYTES), 0xFF: b"\xff" * _LARGEST_CHUNK_BYTES}


@functools.cache
def _byte_translations(entry_size: int, ignored_bits: int, all_ones: bool) -> tuple[tuple[int, bytes], ...]:
    """For each byte of an entry (in memory order) that holds ignored bits: a table that clears them (or sets them)."""
    translations = []
    for position in range(entry_size):
        significance = position if sys.byteorder == "little" else entry_size - 1 - position
        mask = ignored_bits >> (8 * significance) & 0xFF
        if mask:
            table = bytes((value | mask) if all_ones else (value & ~mask) for value in range(256))
            translations.append((position, table))
    return tuple(translations)


def end_of_run(table: array.array[int], index: int, stop: int, *, all_ones: bool = False, ignored_bits: int = 0) -> int:
    """The first index in [index, stop) whose entry, `ignored_bits` aside, is not 0 (with `all_ones`: not all one
    bits); else `stop`.

    Runs of entries that mean "no data" are what a sparse disk's tables are made of, and some formats give that
    meaning to more than one value (a qcow2 entry with the zero flag or the COPIED flag alone, VDI's discarded
    block, a VMDK zeroed grain). They are skipped at memory speed: a chunk of the table is copied, the ignored bits
    are cleared (or set) across all its entries by byte translation, and the chunk is compared with a run of the
    fill byte, so the cost per entry is a few byte operations in C rather than a Python step.
    """
    size = table.itemsize
    raw = memoryview(table).cast("B")
    fill = _FILLS[0xFF if all_ones else 0x00]
    translations = _byte_translations(size, ignored_bits, all_ones)
    chunk_entries = _FIRST_CHUNK_ENTRIES
    position = index
    while position < stop:
        count = min(chunk_entries, stop - position)
        chunk = bytearray(raw[position * size : (position + count) * size])
        for offset, translation in translations:
            chunk[offset::size] = chunk[offset::size].translate(translation)
        if chunk != fill[: len(chunk)]:
            match = (_NOT_FF_BYTE if all_ones else _NOT_ZERO_BYTE).search(chunk)
            assert match is not None, "a chunk that differs from the fill holds another byte"
            return position + match.start() // size
        position += count
        chunk_entries = min(chunk_entries * 4, _LARGEST_CHUNK_BYTES // size)
    return stop


def end_of_contiguous_run(
    table: array.array[int], index: int, stop: int, *, first_value: int, step: int, ignored_bits: int = 0
) -> int:
    """The first index in (index, stop) whose entry, `ignored_bits` aside, is not `first_value` plus `step` for each
    entry past `index`; else `stop`. Entry `index` itself is taken to hold `first_value`.

    Entries naming units stored one after another in the file are read as one run, with one read.
    """
    kept_bits = ~ignored_bits
    position = index + 1
    expected = first_value + step
    while position < stop and table[position] & kept_bits == expected:
        position += 1
        expected += step
    return position


class TableCache:
    """Second-level tables of one size, read when first needed and kept decoded, the least recently used dropped.

    Every lookup is charged to the metadata budget, whether the table is read or served from the cache, so that a
    pass over the tables costs the same whatever an earlier pass left cached. `charged_bytes` (at least the table's
    size) is what one lookup costs, where a pass costs more per table than its bytes.
    """

    def __init__(
        self,
        metadata: MetadataReader,
        *,
        table_bytes: int,
        entry_size: int,
        big_endian: bool,
        what: str,
        charged_bytes: int = 0,
    ) -> None:
        self._metadata = metadata
        self._table_bytes = table_bytes
        self._entry_size = entry_size
        self._big_endian = big_endian
        self._what = what
        self._charged_bytes = max(table_bytes, charged_bytes)
        self._tables: OrderedDict[int, array.array[int]] = OrderedDict()
        self._kept = tables_kept(metadata.limits.table_cache_bytes, table_bytes)

    def holds(self, file_offset: int) -> bool:
        """Whether the table at `file_offset` is decoded and kept."""
        return file_offset in self._tables

    def prefetch(self, file_offsets: list[int]) -> None:
        """Hint the tables at `file_offsets` to the source, to be read soon."""
        self._metadata.prefetch([(offset, self._table_bytes) for offset in file_offsets])

    def table(self, file_offset: int) -> array.array[int]:
        """The table stored at `file_offset`, which must lie inside the file."""
        table = self._tables.get(file_offset)
        if table is not None:
            self._metadata.charge(self._charged_bytes, self._what)
            self._tables.move_to_end(file_offset)
            return table
        data = self._metadata.read(file_offset, self._table_bytes, self._what)
        self._metadata.charge(self._charged_bytes - self._table_bytes, self._what)
        table = unpack_table(data, self._entry_size, big_endian=self._big_endian)
        self._tables[file_offset] = table
        if len(self._tables) > self._kept:
            self._tables.popitem(last=False)
        return table


# Second-level tables the walk asks its source for at once, ahead of reading them: each is a round trip from S3,
# so a 64 GiB qcow2's 128 L2 tables cost 8 rounds rather than 128, and the source's page cache (64 pages) holds them.
TABLES_READ_AHEAD = 16


# What a format makes of the units [first, last) of one second-level table: (span start, table, first, last).
TableRuns = Callable[[int, array.array[int], int, int], Iterator[Segment]]


class TwoLevelTables:
    """A directory whose entries name second-level tables, each mapping `units_per_table` units of `unit_size`.

    A directory entry names its table with `offset_bits` (the rest are flags), in units of `offset_scale` bytes; an
    entry whose offset bits are clear names none, and its whole span reads as zeros.
    """

    def __init__(
        self,
        directory: array.array[int],
        tables: TableCache,
        *,
        unit_size: int,
        units_per_table: int,
        offset_bits: int,
        offset_scale: int = 1,
    ) -> None:
        self._directory = directory
        self._tables = tables
        self._unit_size = unit_size
        self._units_per_table = units_per_table
        self._offset_bits = offset_bits
        self._not_offset_bits = ((1 << (8 * directory.itemsize)) - 1) & ~offset_bits
        self._offset_scale = offset_scale

    def units(self, start: int, end: int, table_runs: TableRuns) -> Iterator[Segment]:
        """Segments covering [start, end): spans without a table as zeros, the others as `table_runs` reads them."""
        unit_size = self._unit_size
        span = unit_size * self._units_per_table
        directory = self._directory
        index, last_index = start // span, (end - 1) // span
        read_ahead_until = index
        while index <= last_index:
            span_start = index * span
            table_offset = directory[index] & self._offset_bits
            if not table_offset:  # a run of directory entries without tables becomes one segment
                run_end = end_of_run(directory, index + 1, last_index + 1, ignored_bits=self._not_offset_bits)
                yield zero(span_start, (run_end - index) * span)
                index = run_end
                continue
            if index >= read_ahead_until:
                read_ahead_until = self._read_ahead(index, last_index + 1)
            index += 1
            table = self._tables.table(table_offset * self._offset_scale)
            first = max(start - span_start, 0) // unit_size
            last = -(-(min(end, span_start + span) - span_start) // unit_size)
            yield from table_runs(span_start, table, first, last)

    def _read_ahead(self, index: int, stop: int) -> int:
        """Hint the next `TABLES_READ_AHEAD` tables from directory entry `index` to the source; answers the entry
        after the last one hinted."""
        offsets: list[int] = []
        position = index
        while position < stop and len(offsets) < TABLES_READ_AHEAD:
            table_offset = self._directory[position] & self._offset_bits
            if table_offset and not self._tables.holds(table_offset * self._offset_scale):
                offsets.append(table_offset * self._offset_scale)
            position += 1
        self._tables.prefetch(offsets)
        return position


class BlockTableLayout(abc.ABC):
    """A disk mapped by one flat table of equal blocks (VHD, VHDX, VDI).

    The format says where a block is stored, checked, or None where it reads as zeros (`block_offset`), and where a
    run of blocks that read as zeros ends (`end_of_zero_run`): a run becomes one segment, so a sparse disk costs per
    run, not per block.
    """

    format_name: str

    def __init__(
        self, subformat: str, virtual_size: int, metadata: MetadataReader, *, block_size: int, stored_unit_size: int
    ) -> None:
        self.subformat = subformat
        self.virtual_size = virtual_size
        self.stored_unit_size = stored_unit_size
        self._metadata = metadata
        self._block_size = block_size

    def units(self, start: int, end: int) -> Iterator[Segment]:
        block_size = self._block_size
        index, last = start // block_size, (end - 1) // block_size
        while index <= last:
            offset = self.block_offset(index)
            if offset is None:
                run_end = self.end_of_zero_run(index + 1, last + 1)
                yield zero(index * block_size, (run_end - index) * block_size)
                index = run_end
                continue
            yield stored(index * block_size, block_size, offset)
            index += 1

    @abc.abstractmethod
    def block_offset(self, index: int) -> int | None:
        """Where block `index` is stored, once the format has checked it; None where it reads as zeros."""

    @abc.abstractmethod
    def end_of_zero_run(self, index: int, stop: int) -> int:
        """The first block in [index, stop) that does not read as zeros, else `stop`."""
