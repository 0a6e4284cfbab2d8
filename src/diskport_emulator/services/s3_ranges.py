"""Ranged S3 GETs that read only their range, so reading a large object in pieces does not hold it whole.

moto answers every GetObject by copying the whole object into memory (`FakeKey.value`) and then slicing out
the requested range: each ranged read of a 4 GiB image costs 8 GiB and the time to copy them, where S3
reads only the range. `install()` makes a GetObject with a Range header slice the object's file instead.

In server mode a range of a MiB or more is not even read into one buffer: the answer streams it from the
object's files a quarter MiB at a time (through duplicated descriptors, so that a delete or an overwrite of the
object while it streams leaves the answer as it began, as S3 does), which spares the emulator an allocation,
a copy and the page faults of a fresh buffer for each of an import's 8 MiB reads.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

_RANGED = threading.local()
STREAMED_BYTES = 1024 * 1024  # ranges this large stream in server mode
PIECE_BYTES = 256 * 1024


class StreamedRange:
    """A range's bytes as the WSGI server sends them: pieces read from files (or held bytes), in order."""

    def __init__(self, pieces: list[tuple[int, int, int] | bytes]) -> None:
        self._pieces = pieces  # (descriptor, offset, length) or bytes
        self._length = sum(piece[2] if isinstance(piece, tuple) else len(piece) for piece in pieces)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        try:
            for piece in self._pieces:
                if isinstance(piece, bytes):
                    yield piece
                    continue
                descriptor, offset, length = piece
                while length > 0:
                    data = os.pread(descriptor, min(length, PIECE_BYTES), offset)
                    if not data:
                        raise OSError(f"the object's file ended {length} bytes early")
                    offset, length = offset + len(data), length - len(data)
                    yield data
        finally:
            self.close()

    def close(self) -> None:
        pieces, self._pieces = self._pieces, []
        for piece in pieces:
            if isinstance(piece, tuple):
                os.close(piece[0])


def _file_pieces(buffer: Any, start: int, length: int) -> list[tuple[int, int, int] | bytes]:
    """The range of one buffer (moto's SpooledTemporaryFile): its file's descriptor, or its bytes in memory."""
    if getattr(buffer, "_rolled", False):
        return [(os.dup(buffer.fileno()), start, length)]
    buffer.seek(start)
    return [bytes(buffer.read(length))]


class RangedContent:
    """An object's bytes as `len()` and slices, read from its buffer only when sliced."""

    def __init__(self, key: Any, streams: bool = False) -> None:
        self._key = key
        self._streams = streams

    def __len__(self) -> int:
        return int(self._key.contentsize)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, part: slice) -> bytes | StreamedRange:
        start, stop, _ = part.indices(len(self))
        length = max(0, stop - start)
        with self._key.lock:
            buffer = self._key._value_buffer
            if self._streams and length >= STREAMED_BYTES:
                if hasattr(buffer, "segments"):  # a completed multipart upload's parts
                    pieces = [piece for each in buffer.segments(start, length) for piece in _file_pieces(*each)]
                else:
                    pieces = _file_pieces(buffer, start, length)
                return StreamedRange(pieces)
            buffer.seek(start)
            return bytes(buffer.read(length))


def install() -> None:
    """Make moto's ranged GetObject read only the range (idempotent)."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(S3Response.get_object, "reads_ranges_only", False):
        return
    whole_value: Any = FakeKey.__dict__["value"]  # the property itself

    def value(key: Any) -> Any:
        if getattr(_RANGED, "active", False):
            return RangedContent(key, streams=getattr(_RANGED, "streams", False))
        return whole_value.fget(key)

    FakeKey.value = property(value, whole_value.fset)  # type: ignore[assignment,method-assign]
    original_get_object = S3Response.get_object

    @functools.wraps(original_get_object)
    def get_object(response: Any) -> Any:
        ranged = bool(response.headers.get("range")) and not response.querystring.get("partNumber")
        _RANGED.active = ranged
        # The WSGI server sends an iterable answer piece by piece; in-process (decorator mode) it must be bytes.
        _RANGED.streams = bool(getattr(getattr(response, "request", None), "from_wsgi_server", False))
        try:
            return original_get_object(response)
        finally:
            _RANGED.active = _RANGED.streams = False

    get_object.reads_ranges_only = True  # type: ignore[attr-defined]
    S3Response.get_object = get_object  # type: ignore[method-assign,assignment]
