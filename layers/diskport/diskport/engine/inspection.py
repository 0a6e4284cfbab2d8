"""Bounded, checked reads of an image's metadata, shared by every format reader."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import BrokenImageError
from .limits import InspectionLimits
from .sources import ByteSource, prefetch

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

    def prefetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Hint that these reads come next (`sources.prefetch`); ranges outside the file are left for the read
        itself to refuse."""
        prefetch(self.source, [(offset, length) for offset, length in ranges if 0 <= offset <= self.file_size - length])

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


def printable(raw: bytes, limit: int = 200) -> str:
    """Text from a header, safe to put into a reason a person reads."""
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    text = "".join(character if character.isprintable() else "?" for character in text)
    return text if len(text) <= limit else text[:limit] + "..."
