"""Bounded, checked reads of an image's metadata, shared by every format reader."""

from __future__ import annotations

import array
import functools
import re
import sys

from .errors import BrokenImageError
from .limits import InspectionLimits
from .sources import ByteSource

REUPLOAD_HINT = "the file is truncated or corrupt: export the disk again and upload the new file"


def human_size(size: int) -> str:
    """`size` in the largest binary unit that keeps it readable, e.g. '64 TiB' or '2^63 bytes'."""
    if size >= 1 << 60 and size & (size - 1) == 0:
        return f"2^{size.bit_length() - 1} bytes"
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


class MetadataReader:
    """Reads headers and tables of one image, refusing reads outside the file and counting them against a budget."""

    def __init__(self, source: ByteSource, limits: InspectionLimits, format_label: str) -> None:
        self.source = source
        self.limits = limits
        self.format_label = format_label
        self.file_size = source.size
        # Charged per pass over the tables (see begin_pass), on top of what opening the image read.
        self.bytes_read = 0
        self._opening_bytes: int | None = None

    def read(self, offset: int, length: int, what: str) -> bytes:
        """Exactly `length` bytes at `offset`, which must lie inside the file."""
        self.require_inside(offset, length, what)
        self.charge(length, what)
        data = self.source.read_at(offset, length)
        if len(data) != length:
            raise BrokenImageError(
                f"The {self.format_label} {what} ends early at the end of the file: {REUPLOAD_HINT}."
            )
        return data

    def charge(self, length: int, what: str) -> None:
        """Count `length` bytes of metadata used by this pass, read now or served from a cache of decoded tables.

        Counting cache hits too makes a pass cost the same whatever an earlier pass left in the cache.
        """
        self.bytes_read += length
        if self.bytes_read > self.limits.max_metadata_bytes:
            raise BrokenImageError(
                f"Reading the {self.format_label} {what} would take the metadata read past "
                f"{human_size(self.limits.max_metadata_bytes)}, more than any real image needs: "
                "the tables are corrupt or crafted; export the disk again and upload the new file."
            )

    def begin_pass(self) -> None:
        """Start a new walk of the tables: each walk may read up to the budget, beyond what opening read.

        A pass reads each table once, so charging every pass to one shared count would halve the real limit, and a
        valid image could pass one walk and be refused in the next, after blocks were already emitted.
        """
        if self._opening_bytes is None:
            self._opening_bytes = self.bytes_read
        self.bytes_read = self._opening_bytes

    def read_table(self, offset: int, length: int, what: str) -> bytes:
        """A table held in memory as a whole: bounded by `max_table_bytes` before anything is allocated."""
        if length > self.limits.max_table_bytes:
            raise BrokenImageError(
                f"The {self.format_label} {what} claims {human_size(length)}, more than the "
                f"{human_size(self.limits.max_table_bytes)} allowed: the header is corrupt or crafted; "
                "export the disk again and upload the new file."
            )
        return self.read(offset, length, what)

    def require_inside(self, offset: int, length: int, what: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.file_size:
            raise BrokenImageError(
                f"The {self.format_label} {what} at offset {offset} ({length} bytes) lies outside the "
                f"{self.file_size}-byte file: {REUPLOAD_HINT}."
            )

    def require_virtual_size(self, virtual_size: int) -> None:
        if virtual_size > self.limits.max_virtual_size:
            raise BrokenImageError(
                f"The {self.format_label} header claims a virtual disk of {human_size(virtual_size)}, beyond the "
                f"{human_size(self.limits.max_virtual_size)} maximum of an EBS volume: the header is corrupt, or "
                "the disk must be shrunk before import."
            )


# Second-level tables remembered to refuse one used twice (about 70 bytes each). Past this many, the metadata budget
# alone bounds what shared tables could make the engine read.
SHARED_TABLE_CHECK_LIMIT = 1_048_576


def is_repeated(seen: set[int], offset: int) -> bool:
    """Whether `offset` was already seen; remembers it while the set stays under its bound."""
    if offset in seen:
        return True
    if len(seen) < SHARED_TABLE_CHECK_LIMIT:
        seen.add(offset)
    return False


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


def printable(raw: bytes, limit: int = 200) -> str:
    """Text from a header, safe to put into a reason a person reads."""
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    text = "".join(character if character.isprintable() else "?" for character in text)
    return text if len(text) <= limit else text[:limit] + "..."


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
