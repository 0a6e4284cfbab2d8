"""The virtual disk of an accepted image: its size, allocation map, bytes, and non-zero 512 KiB blocks."""

from __future__ import annotations

import base64
import itertools
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from .checksums import block_digests
from .errors import BrokenImageError
from .inspection import MetadataReader, is_repeated
from .layout import Layout, RangeCollector, Segment, SegmentKind, merged_segments
from .limits import MIB, InspectionLimits
from .sources import ByteSource, ClosedOnExit, coalesces_reads

BLOCK_SIZE = 524_288  # EBS direct API block size
ZERO_BLOCK = bytes(BLOCK_SIZE)
# A job of contiguous stored data covers this much: one S3 GET serves its 16 blocks.
READ_AHEAD_BYTES = 8 * MIB
# read() builds its answer in memory: larger ranges go through iter_blocks.
MAX_READ_BYTES = 64 * MIB
# Decompressed qcow2 clusters / VMDK grains kept, so a block made of one unit does not inflate it twice.
DECOMPRESSED_UNITS_KEPT = 8


@dataclass(frozen=True)
class Block:
    """One 512 KiB block of the virtual disk, ready for PutSnapshotBlock."""

    index: int  # byte offset // BLOCK_SIZE
    data: bytes  # exactly BLOCK_SIZE bytes (the last block is zero-padded)
    checksum: str  # base64 of sha256(data), the form the EBS direct API wants


def _non_zero_blocks(candidates: Iterable[tuple[int, bytes]]) -> list[Block]:
    kept = [(index, data) for index, data in candidates if data != ZERO_BLOCK]
    digests = block_digests([data for _index, data in kept])
    return [
        Block(index, data, base64.b64encode(digest).decode("ascii"))
        for (index, data), digest in zip(kept, digests, strict=True)
    ]


class DiskImage(ClosedOnExit):
    """An image whose header and top-level tables passed every check; returned by `open_disk`."""

    def __init__(
        self,
        source: ByteSource,
        layout: Layout,
        limits: InspectionLimits,
        *,
        metadata: MetadataReader,
        worker_threads: int | None = None,
    ) -> None:
        self.format: str = layout.format_name
        self.subformat: str = layout.subformat
        self.virtual_size: int = layout.virtual_size
        self.source = source
        self.limits = limits
        self._layout = layout
        self._metadata = metadata
        # Two threads keep two cores busy (Lambda gives 2 vCPUs from 3,538 MB); larger functions get up to four,
        # which keeps the data in flight (a few 8 MiB jobs per thread) well under 256 MiB.
        self._worker_threads = worker_threads or max(2, min(4, os.cpu_count() or 2))
        self._executor: ThreadPoolExecutor | None = None
        # Keyed by where a unit is stored and its length: fewer bytes named at the same offset make another unit.
        self._units: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._units_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DiskImage(format={self.format!r}, subformat={self.subformat!r}, virtual_size={self.virtual_size})"

    def segments(self, start: int, end: int) -> Iterator[Segment]:
        """How [start, end) of the virtual disk is stored, from the format's tables (no data is read).

        Each call is one pass over the tables, with a metadata budget of its own: the whole-disk pass of
        `allocated_ranges()` reads every table a later pass over part of the disk can read, so once it has passed,
        no later pass is refused for its metadata after blocks were emitted.
        """
        end = min(end, self.virtual_size)
        if end <= start:
            return iter(())
        self._metadata.begin_pass()
        return merged_segments(self._layout.units(start, end), start, end)

    def allocated_ranges(self) -> list[tuple[int, int]]:
        """Sorted, merged (start, end) byte ranges that may hold data, read from the format's tables only.

        Reading every second-level table also vets it, before any data is decoded: an image whose tables point
        outside the file is refused here, and so is one whose tables map more stored (uncompressed) data than the
        file holds (plus one unit, whose tail may run past its end), or name one compressed unit twice. Each stored
        byte backs one byte of the virtual disk; tables that reuse the same bytes many times would make a small file
        cost the work of a large disk.
        """
        collector = RangeCollector(self.limits.max_allocation_ranges)
        stored_bytes = 0
        most_stored_bytes = self.source.size + self._layout.stored_unit_size
        compressed_units: set[int] = set()
        for segment in self.segments(0, self.virtual_size):
            if segment.kind is SegmentKind.ZERO:
                continue
            collector.add(segment.start, segment.end)
            if segment.kind is SegmentKind.COMPRESSED and is_repeated(compressed_units, segment.file_offset):
                raise BrokenImageError(
                    f"Two {self.format} table entries name the compressed unit at offset {segment.file_offset}, which "
                    "no writer does: the tables are corrupt or crafted; export the disk again and upload the new file."
                )
            if segment.kind is SegmentKind.DATA:
                stored_bytes += segment.length
                if stored_bytes > most_stored_bytes:
                    raise BrokenImageError(
                        f"The {self.format} tables map more stored data than the {self.source.size}-byte file holds: "
                        "they are corrupt or crafted; export the disk again and upload the new file."
                    )
        return collector.ranges()

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes of the virtual disk at `offset` (fewer only past the end of the disk)."""
        if offset < 0 or length < 0:
            raise ValueError(f"read needs a non-negative offset and length, got {offset} and {length}")
        if length > MAX_READ_BYTES:
            raise ValueError(f"read returns at most {MAX_READ_BYTES} bytes at once; use iter_blocks for more")
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
        This thread only walks the tables; reading, inflating, assembling and hashing run on a small thread pool
        (pread, S3 GETs, zlib, zstd and hashlib's SHA-256 release the GIL), a job's blocks hashed together.
        At most a few jobs are in flight, so memory does not grow with the image, and blocks come out in index order.
        """
        self._check_block_range(start, end)
        executor = self._worker_pool()
        in_flight: deque[Future[list[Block]]] = deque()
        most_in_flight = self._worker_threads + 2
        for job in self._block_jobs(start, min(end, self.virtual_size)):
            in_flight.append(executor.submit(job))
            if len(in_flight) >= most_in_flight:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._units.clear()

    def _check_block_range(self, start: int, end: int) -> None:
        rounded_size = -(-self.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        if start < 0 or start % BLOCK_SIZE:
            raise ValueError(f"start {start} is not a non-negative multiple of {BLOCK_SIZE}")
        if end % BLOCK_SIZE and end != self.virtual_size:
            raise ValueError(f"end {end} is neither a multiple of {BLOCK_SIZE} nor the virtual size")
        if end > rounded_size:
            raise ValueError(f"end {end} lies beyond the last block of the disk ({rounded_size})")

    def _worker_pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._worker_threads, thread_name_prefix="diskport-blocks")
        return self._executor

    def _block_jobs(self, start: int, end: int) -> Iterator[Callable[[], list[Block]]]:
        """Jobs that each produce the non-zero blocks of a stretch of [start, end), in order.

        A job gathers consecutive parts until it holds up to 16 blocks, so that a worker thread's unit of work stays
        a few MiB even where the format stores data in short runs or compressed units.
        """
        blocks_per_job = READ_AHEAD_BYTES // BLOCK_SIZE
        parts: list[Callable[[], list[tuple[int, bytes]]]] = []
        blocks_in_job = 0
        for count, part in self._block_parts(start, end, blocks_per_job):
            if parts and blocks_in_job + count > blocks_per_job:
                yield partial(self._hashed_blocks, parts)
                parts, blocks_in_job = [], 0
            parts.append(part)
            blocks_in_job += count
        if parts:
            yield partial(self._hashed_blocks, parts)

    def _block_parts(
        self, start: int, end: int, most_blocks: int
    ) -> Iterator[tuple[int, Callable[[], list[tuple[int, bytes]]]]]:
        """(block count, reader) for each run of whole stored blocks and each block to assemble, in order."""
        current_index = -1
        pieces: list[Segment] = []  # the parts of block `current_index` to assemble
        for segment in self.segments(start, end):
            if segment.kind is SegmentKind.ZERO:
                continue
            position = segment.start
            while position < segment.end:
                index = position // BLOCK_SIZE
                block_start = index * BLOCK_SIZE
                if index != current_index:
                    if pieces:
                        yield 1, partial(self._assembled_block, current_index, pieces)
                    current_index, pieces = index, []
                if (
                    not pieces
                    and segment.kind is SegmentKind.DATA
                    and position == block_start
                    and segment.end - position >= BLOCK_SIZE
                ):
                    # Whole blocks stored contiguously: one read serves many blocks, with no assembly.
                    count = min((segment.end - position) // BLOCK_SIZE, most_blocks)
                    file_offset = segment.file_offset + (position - segment.start)
                    yield count, partial(self._stored_blocks, index, file_offset, count)
                    position += count * BLOCK_SIZE
                    current_index = index + count - 1
                    continue
                piece_end = min(segment.end, block_start + BLOCK_SIZE)
                pieces.append(segment.clipped(position, piece_end))
                position = piece_end
        if pieces:
            yield 1, partial(self._assembled_block, current_index, pieces)

    @staticmethod
    def _hashed_blocks(parts: list[Callable[[], list[tuple[int, bytes]]]]) -> list[Block]:
        return _non_zero_blocks([candidate for part in parts for candidate in part()])

    def _assembled_block(self, index: int, pieces: list[Segment]) -> list[tuple[int, bytes]]:
        """A block made of several pieces (compressed units, scattered clusters, the partial last block)."""
        block_start = index * BLOCK_SIZE
        if (
            pieces[0].start == block_start
            and pieces[-1].end == block_start + BLOCK_SIZE
            and all(previous.end == following.start for previous, following in itertools.pairwise(pieces))
        ):
            # The pieces tile the block (a run of compressed clusters, say): one copy joins them.
            return [(index, b"".join([self._segment_bytes(piece) for piece in pieces]))]
        block = bytearray(BLOCK_SIZE)
        for piece in pieces:
            block[piece.start - block_start : piece.end - block_start] = self._segment_bytes(piece)
        return [(index, bytes(block))]

    def _stored_blocks(self, first_index: int, file_offset: int, count: int) -> list[tuple[int, bytes]]:
        if not coalesces_reads(self.source):
            # One read per block: no copying out of a large buffer when a read costs only a system call.
            return [
                (first_index + number, self._read_stored(file_offset + number * BLOCK_SIZE, BLOCK_SIZE))
                for number in range(count)
            ]
        stored = memoryview(self._read_stored(file_offset, count * BLOCK_SIZE))
        return [
            (first_index + number, bytes(stored[number * BLOCK_SIZE : (number + 1) * BLOCK_SIZE]))
            for number in range(count)
        ]

    def _segment_bytes(self, segment: Segment) -> bytes:
        if segment.kind is SegmentKind.DATA:
            return self._read_stored(segment.file_offset, segment.length)
        if segment.kind is SegmentKind.COMPRESSED:
            unit = self._decompressed_unit(segment)
            if segment.offset_in_unit == 0 and segment.length == len(unit):
                return unit  # the whole unit: no copy
            return unit[segment.offset_in_unit : segment.offset_in_unit + segment.length]
        return bytes(segment.length)

    def _read_stored(self, file_offset: int, length: int) -> bytes:
        data = self.source.read_at(file_offset, length)
        # The formats vet that stored data starts inside the file; like qemu, a tail past its end reads as zeros.
        return data if len(data) == length else data + bytes(length - len(data))

    def _decompressed_unit(self, segment: Segment) -> bytes:
        key = (segment.file_offset, segment.stored_length)
        with self._units_lock:
            unit = self._units.get(key)
            if unit is not None:
                self._units.move_to_end(key)
                return unit
        assert segment.decompress is not None, "a compressed segment always carries its decompressor"
        # Inflating outside the lock lets workers inflate different units at once (zlib and zstd release the GIL).
        unit = segment.decompress(self.source.read_at(segment.file_offset, segment.stored_length))
        with self._units_lock:
            self._units[key] = unit
            if len(self._units) > DECOMPRESSED_UNITS_KEPT:
                self._units.popitem(last=False)
        return unit
