"""The virtual disk of an accepted image: its size, allocation map, bytes, and non-zero 512 KiB blocks."""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from .layout import Layout, RangeCollector, Segment, SegmentKind, merged_segments
from .limits import MIB, InspectionLimits
from .sources import ByteSource

BLOCK_SIZE = 524_288  # EBS direct API block size
ZERO_BLOCK = bytes(BLOCK_SIZE)
# Contiguous data is read in pieces of this size: one S3 GET, or one pread, serves 16 blocks.
READ_AHEAD_BYTES = 8 * MIB
# Decompressed qcow2 clusters / VMDK grains kept, so a block made of one unit does not inflate it twice.
DECOMPRESSED_UNITS_KEPT = 8


@dataclass(frozen=True)
class Block:
    """One 512 KiB block of the virtual disk, ready for PutSnapshotBlock."""

    index: int  # byte offset // BLOCK_SIZE
    data: bytes  # exactly BLOCK_SIZE bytes (the last block is zero-padded)
    checksum: str  # base64 of sha256(data), the form the EBS direct API wants


def make_block(index: int, data: bytes) -> Block:
    return Block(index, data, base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"))


class DiskImage:
    """An image whose header and top-level tables passed every check; returned by `open_disk`."""

    def __init__(
        self, source: ByteSource, layout: Layout, limits: InspectionLimits, *, hashing_threads: int = 2
    ) -> None:
        self.format: str = layout.format_name
        self.subformat: str = layout.subformat
        self.virtual_size: int = layout.virtual_size
        self.source = source
        self.limits = limits
        self._layout = layout
        self._hashing_threads = max(1, hashing_threads)
        self._executor: ThreadPoolExecutor | None = None
        self._units: OrderedDict[int, bytes] = OrderedDict()

    def __repr__(self) -> str:
        return f"DiskImage(format={self.format!r}, subformat={self.subformat!r}, virtual_size={self.virtual_size})"

    def segments(self, start: int, end: int) -> Iterator[Segment]:
        """How [start, end) of the virtual disk is stored, from the format's tables (no data is read)."""
        end = min(end, self.virtual_size)
        if end <= start:
            return iter(())
        return merged_segments(self._layout.units(start, end), start, end)

    def allocated_ranges(self) -> list[tuple[int, int]]:
        """Sorted, merged (start, end) byte ranges that may hold data, read from the format's tables only.

        Reading every second-level table also vets it: an image whose tables point outside the file is refused
        here, before any of its data is decoded.
        """
        collector = RangeCollector(self.limits.max_allocation_ranges)
        for segment in self.segments(0, self.virtual_size):
            if segment.kind is not SegmentKind.ZERO:
                collector.add(segment.start, segment.end)
        return collector.ranges()

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes of the virtual disk at `offset` (fewer only past the end of the disk)."""
        if offset < 0 or length < 0:
            raise ValueError(f"read needs a non-negative offset and length, got {offset} and {length}")
        end = min(offset + length, self.virtual_size)
        if end <= offset:
            return b""
        buffer = bytearray(end - offset)
        for segment in self.segments(offset, end):
            if segment.kind is not SegmentKind.ZERO:
                buffer[segment.start - offset : segment.end - offset] = self._segment_bytes(segment)
        return bytes(buffer)

    def iter_blocks(self, start: int, end: int) -> Iterator[Block]:
        """Each 512 KiB block of [start, end) that is not all zeros, in index order, with its checksum.

        `start` and `end` are block-aligned byte offsets; `end` may be the virtual size or the virtual size
        rounded up to a block. Unallocated ranges are skipped from the tables, without reading anything.
        Hashing runs on a small thread pool (hashlib releases the GIL) while the next blocks are read.
        """
        self._check_block_range(start, end)
        executor = self._hash_executor()
        in_flight: deque[Future[Block]] = deque()
        most_in_flight = 4 * self._hashing_threads
        for index, data in self._nonzero_block_data(start, min(end, self.virtual_size)):
            in_flight.append(executor.submit(make_block, index, data))
            if len(in_flight) >= most_in_flight:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._units.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _check_block_range(self, start: int, end: int) -> None:
        rounded_size = -(-self.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        if start < 0 or start % BLOCK_SIZE:
            raise ValueError(f"start {start} is not a non-negative multiple of {BLOCK_SIZE}")
        if end % BLOCK_SIZE and end != self.virtual_size:
            raise ValueError(f"end {end} is neither a multiple of {BLOCK_SIZE} nor the virtual size")
        if end > rounded_size:
            raise ValueError(f"end {end} lies beyond the last block of the disk ({rounded_size})")

    def _hash_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._hashing_threads, thread_name_prefix="diskport-hash")
        return self._executor

    def _nonzero_block_data(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(index, 512 KiB) for every block of [start, end) that holds a non-zero byte."""
        current_index = -1
        current: bytearray | None = None
        for segment in self.segments(start, end):
            if segment.kind is SegmentKind.ZERO:
                continue
            position = segment.start
            while position < segment.end:
                index = position // BLOCK_SIZE
                block_start = index * BLOCK_SIZE
                if index != current_index:
                    if current is not None and current != ZERO_BLOCK:
                        yield current_index, bytes(current)
                    current_index, current = index, None
                if (
                    current is None
                    and segment.kind is SegmentKind.DATA
                    and position == block_start
                    and segment.end - position >= BLOCK_SIZE
                ):
                    # Whole blocks stored contiguously: one read serves many blocks, with no assembly.
                    count = min((segment.end - position) // BLOCK_SIZE, READ_AHEAD_BYTES // BLOCK_SIZE)
                    stored = self._read_stored(segment.file_offset + (position - segment.start), count * BLOCK_SIZE)
                    view = memoryview(stored)
                    for number in range(count):
                        data = bytes(view[number * BLOCK_SIZE : (number + 1) * BLOCK_SIZE])
                        if data != ZERO_BLOCK:
                            yield index + number, data
                    position += count * BLOCK_SIZE
                    current_index = index + count - 1
                    continue
                piece_end = min(segment.end, block_start + BLOCK_SIZE)
                if current is None:
                    current = bytearray(BLOCK_SIZE)
                piece = segment.clipped(position, piece_end)
                current[position - block_start : piece_end - block_start] = self._segment_bytes(piece)
                position = piece_end
        if current is not None and current != ZERO_BLOCK:
            yield current_index, bytes(current)

    def _segment_bytes(self, segment: Segment) -> bytes:
        if segment.kind is SegmentKind.DATA:
            return self._read_stored(segment.file_offset, segment.length)
        if segment.kind is SegmentKind.COMPRESSED:
            unit = self._decompressed_unit(segment)
            return unit[segment.offset_in_unit : segment.offset_in_unit + segment.length]
        return bytes(segment.length)

    def _read_stored(self, file_offset: int, length: int) -> bytes:
        data = self.source.read_at(file_offset, length)
        # The formats vet that stored data starts inside the file; like qemu, a tail past its end reads as zeros.
        return data if len(data) == length else data + bytes(length - len(data))

    def _decompressed_unit(self, segment: Segment) -> bytes:
        unit = self._units.get(segment.file_offset)
        if unit is not None:
            self._units.move_to_end(segment.file_offset)
            return unit
        assert segment.decompress is not None, "a compressed segment always carries its decompressor"
        unit = segment.decompress(self.source.read_at(segment.file_offset, segment.stored_length))
        self._units[segment.file_offset] = unit
        if len(self._units) > DECOMPRESSED_UNITS_KEPT:
            self._units.popitem(last=False)
        return unit
