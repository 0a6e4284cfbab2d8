"""Byte sources: where the image file's bytes come from.

The engine never holds an image in memory or on disk. It reads the file by offset through a `ByteSource`,
a local file here, or the service's S3 object source (`diskport.stores.source_objects`), which reads with
ranged GETs pinned to the ETag noted when the import started, so that every read of one import sees the same
version of the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable


@runtime_checkable
class ByteSource(Protocol):
    """Random access to the bytes of one image file."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes:
        """The `length` bytes at `offset`; fewer only where the source ends.

        A failure that is the file's own (it changed, was deleted, may not be read) is a SourceReadError.
        """
        ...


def prefetch(source: ByteSource, ranges: Sequence[tuple[int, int]]) -> None:
    """Tell the source that the small reads (offset, length) `ranges` come next, where it takes the hint.

    A source whose reads are round trips (the S3 object) fetches them at once, side by side, rather than one after
    another as the walk of the tables asks for them. What the source fetches stays its own: a read is still
    checked and charged when it is made.
    """
    take_hint = getattr(source, "prefetch", None)
    if take_hint is not None and ranges:
        take_hint(ranges)


def coalesces_reads(source: ByteSource) -> bool:
    """Whether contiguous data should be read in large requests: a source may say no with `coalesce_reads`."""
    return bool(getattr(source, "coalesce_reads", True))


def readable_length(offset: int, length: int, size: int) -> int:
    """How many of the `length` bytes asked for at `offset` a source of `size` bytes holds (0 past its end)."""
    if offset < 0 or length < 0:
        raise ValueError(f"read_at needs a non-negative offset and length, got {offset} and {length}")
    return max(0, min(length, size - offset))


class ClosedOnExit:
    """What `with` closes on the way out, however the block ends: a local file, an opened disk."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class LocalFileSource(ClosedOnExit):
    """A file on this machine, read with `pread` so concurrent readers never share a file position."""

    # A local read costs a system call, not a round trip: reading block by block saves copying out of big buffers.
    coalesce_reads = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._size = os.fstat(self._descriptor).st_size
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        length = readable_length(offset, length, self._size)
        first = os.pread(self._descriptor, length, offset)
        if len(first) == length:
            return first
        # A regular file answers in one call; this loop only covers exotic file systems.
        pieces = [first]
        received = len(first)
        while received < length:
            piece = os.pread(self._descriptor, length - received, offset + received)
            if not piece:
                break
            pieces.append(piece)
            received += len(piece)
        return b"".join(pieces)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._descriptor)


class WindowSource:
    """The bytes [offset, offset + size) of another source, as a source of their own: an OVA member read in place."""

    def __init__(self, source: ByteSource, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > source.size:
            raise ValueError(f"window [{offset}, {offset + size}) lies outside a source of {source.size} bytes")
        self._source = source
        self._offset = offset
        self._size = size
        self.coalesce_reads = coalesces_reads(source)

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        length = readable_length(offset, length, self._size)
        return self._source.read_at(self._offset + offset, length) if length else b""

    def prefetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        inside = [(offset, length) for offset, length in ranges if offset >= 0 and offset + length <= self._size]
        prefetch(self._source, [(self._offset + offset, length) for offset, length in inside])
