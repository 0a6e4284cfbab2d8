"""How a format maps the virtual disk onto the file: the common language between the formats and the reader.

Each format turns its tables into `Segment`s: a run of the virtual disk that reads as zeros, is stored as is at
an offset of the file, or lies inside a compressed unit (a qcow2 cluster, a VMDK grain). The reader and the
allocation map are written once, against segments, for every format.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

Decompressor = Callable[[bytes], bytes]


class SegmentKind(enum.Enum):
    ZERO = "zero"
    DATA = "data"
    COMPRESSED = "compressed"


class Segment(NamedTuple):
    """`length` bytes of the virtual disk from `start`, and where they come from.

    A named tuple rather than a dataclass: a fragmented disk yields many of these, and tuples are cheap to build.
    """

    start: int
    length: int
    kind: SegmentKind
    # DATA: the file offset holding the byte at `start`. COMPRESSED: the file offset of the compressed unit.
    file_offset: int = 0
    # COMPRESSED only: the unit's stored length, where `start` falls in its decompressed bytes, how to inflate it.
    stored_length: int = 0
    offset_in_unit: int = 0
    decompress: Decompressor | None = None

    @property
    def end(self) -> int:
        return self.start + self.length

    def clipped(self, start: int, end: int) -> Segment:
        """The part of this segment inside [start, end)."""
        new_start = max(self.start, start)
        new_end = min(self.end, end)
        if new_start == self.start and new_end == self.end:
            return self
        skipped = new_start - self.start
        if self.kind is SegmentKind.DATA:
            return self._replace(start=new_start, length=new_end - new_start, file_offset=self.file_offset + skipped)
        if self.kind is SegmentKind.COMPRESSED:
            return self._replace(
                start=new_start, length=new_end - new_start, offset_in_unit=self.offset_in_unit + skipped
            )
        return self._replace(start=new_start, length=new_end - new_start)


def zero(start: int, length: int) -> Segment:
    return Segment(start, length, SegmentKind.ZERO)


def stored(start: int, length: int, file_offset: int) -> Segment:
    return Segment(start, length, SegmentKind.DATA, file_offset)


def compressed(start: int, length: int, file_offset: int, stored_length: int, decompress: Decompressor) -> Segment:
    return Segment(start, length, SegmentKind.COMPRESSED, file_offset, stored_length, 0, decompress)


class Layout(Protocol):
    """What a format reader provides once its header and top-level tables have been vetted."""

    format_name: str
    subformat: str
    virtual_size: int
    # The most stored data one table entry maps (a cluster, grain or block), 0 where data never passes the end of
    # the file: a unit may start inside the file and run past its end (its tail reads as zeros, as in qemu).
    stored_unit_size: int

    def units(self, start: int, end: int) -> Iterator[Segment]:
        """Segments in virtual order, without gaps, covering [start, end) (they may reach beyond it).

        Second-level tables read here are vetted before any of their entries is used.
        """
        ...


class StoredLayout:
    """A disk stored as is from the start of the file: a raw file, a fixed VHD."""

    def __init__(self, format_name: str, subformat: str, virtual_size: int, *, stored_unit_size: int) -> None:
        self.format_name = format_name
        self.subformat = subformat
        self.virtual_size = virtual_size
        self.stored_unit_size = stored_unit_size

    def units(self, start: int, end: int) -> Iterator[Segment]:
        yield stored(0, self.virtual_size, 0)


def merged_segments(units: Iterable[Segment], start: int, end: int) -> Iterator[Segment]:
    """Clip `units` to [start, end) and join neighbours that read alike (zeros, or contiguous file bytes)."""
    pending: Segment | None = None
    for unit in units:
        if unit.end <= start:
            continue
        if unit.start >= end:
            break
        segment = unit if start <= unit.start and unit.start + unit.length <= end else unit.clipped(start, end)
        if pending is not None:
            if segment.kind is pending.kind is SegmentKind.ZERO:
                pending = Segment(pending.start, pending.length + segment.length, SegmentKind.ZERO)
                continue
            if (
                segment.kind is pending.kind is SegmentKind.DATA
                and pending.file_offset + pending.length == segment.file_offset
            ):
                pending = Segment(pending.start, pending.length + segment.length, SegmentKind.DATA, pending.file_offset)
                continue
            yield pending
        pending = segment
    if pending is not None:
        yield pending


class RangeCollector:
    """Builds the sorted, merged list of ranges that may hold data, in bounded memory.

    When the list would outgrow `max_ranges`, ranges closer than a doubling `gap` are merged: the result stays a
    superset of the allocated bytes, which is all the planner needs, and memory never depends on the image.
    """

    def __init__(self, max_ranges: int) -> None:
        self._max_ranges = max(1, max_ranges)
        self._ranges: list[list[int]] = []
        self._gap = 0

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        if self._ranges and start - self._ranges[-1][1] <= self._gap:
            self._ranges[-1][1] = max(self._ranges[-1][1], end)
            return
        self._ranges.append([start, end])
        if len(self._ranges) > self._max_ranges:
            self._coarsen()

    def _coarsen(self) -> None:
        while len(self._ranges) > self._max_ranges // 2:
            self._gap = max(2 * self._gap, 65_536)
            coarser: list[list[int]] = []
            for start, end in self._ranges:
                if coarser and start - coarser[-1][1] <= self._gap:
                    coarser[-1][1] = max(coarser[-1][1], end)
                else:
                    coarser.append([start, end])
            self._ranges = coarser

    def ranges(self) -> list[tuple[int, int]]:
        return [(start, end) for start, end in self._ranges]
