"""Multipart uploads completed without assembling the object in memory.

moto completes a multipart upload by joining every part's bytes in memory (once for the object, once more for
its full-object checksum, then copies of both), and writes the result into the new object's buffer, which holds
it in memory before spilling it to disk: uploading a 4 GiB image took the emulator to a 9 GiB peak, and the
process kept about a GiB of it afterwards. `install()` makes a completed upload's object read its bytes from
the parts' own buffers, which moto already keeps on disk (every part larger than a few MiB) and would
otherwise discard once the upload is complete:

- completing checks what moto checks (every listed part exists with the listed ETag, each part but the last
  is at least 5 MiB, at least one part) and answers S3's multipart ETag, the MD5 of the parts' binary MD5s
  followed by "-" and the number of parts;
- the object's checksum is the one moto computes (the upload's `x-amz-checksum-algorithm`, CRC64NVME of the
  whole object by default; COMPOSITE: the checksum of the parts' checksums, "-N" when read), over the parts
  read a piece at a time;
- GetObject (whole or ranged), HeadObject and CopyObject read the object as they read any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate
from typing import IO, Any, Protocol

PIECE = 8 * 1024 * 1024  # how much of a part is read at a time for a checksum


class ConcatenatedParts:
    """An object's bytes as its parts' buffers one after another: the read-only file moto's `FakeKey` reads.

    The buffers are taken from the parts, which moto disposes of once the upload is complete; `FakeKey` reads
    its buffer only under its own lock, with `seek` then `read`, and closes it when the object is disposed of.
    """

    def __init__(self, buffers: list[tuple[IO[bytes], int]]) -> None:
        self._buffers = buffers
        sizes = [size for _, size in buffers]
        self._starts = [0, *accumulate(sizes)][:-1]
        self.size = sum(sizes)
        self._position = 0
        self.closed = False

    @classmethod
    def taken_from(cls, parts: list[Any]) -> ConcatenatedParts:
        """The parts' buffers, each part left with an empty one (its ETag and size stay, for HeadObject)."""
        buffers = []
        for part in parts:
            with part.lock:
                buffers.append((part._value_buffer, int(part.contentsize)))
                part._value_buffer = io.BytesIO()
        return cls(buffers)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed object")
        end = self.size if size is None or size < 0 else min(self.size, self._position + size)
        pieces = []
        index = bisect_right(self._starts, self._position) - 1
        while self._position < end:
            buffer, part_size = self._buffers[index]
            offset_in_part = self._position - self._starts[index]
            buffer.seek(offset_in_part)
            piece = buffer.read(min(end - self._position, part_size - offset_in_part))
            if not piece and part_size > offset_in_part:
                raise ValueError("a part of the object is shorter than its recorded size")
            pieces.append(piece)
            self._position += len(piece)
            index += 1
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def segments(self, start: int, length: int) -> Iterator[tuple[IO[bytes], int, int]]:
        """(part's buffer, offset in it, length) of each part a range of the object covers, in order."""
        end = min(self.size, start + length)
        index = bisect_right(self._starts, start) - 1
        while start < end:
            buffer, part_size = self._buffers[index]
            offset_in_part = start - self._starts[index]
            taken = min(end - start, part_size - offset_in_part)
            if taken > 0:
                yield buffer, offset_in_part, taken
            start += max(taken, 0)
            index += 1

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("a completed multipart object is read-only")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("a completed multipart object is read-only")

    def close(self) -> None:
        for buffer, _ in self._buffers:
            buffer.close()
        self.closed = True


def part_pieces(part: Any) -> Iterator[bytes]:
    """A part's bytes, `PIECE` at a time."""
    offset = 0
    while offset < part.contentsize:
        with part.lock:
            part._value_buffer.seek(offset)
            piece = part._value_buffer.read(min(PIECE, part.contentsize - offset))
        if not piece:
            return
        offset += len(piece)
        yield piece


class RunningChecksum(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A CRC fed piece by piece, its value as moto's `compute_checksum` gives it (big-endian bytes)."""

    def __init__(self, function: Any, width: int) -> None:
        self._function = function
        self._width = width
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = self._function(data, self._value)

    def digest(self) -> bytes:
        return int(self._value).to_bytes(self._width, "big")


def running_checksum(algorithm: str) -> RunningChecksum:
    """The incremental form of moto's `compute_checksum(body, algorithm)`, with its fallbacks: CRC32 where the
    CRC32C or CRC64NVME library is missing, SHA-256 for an algorithm it does not know."""
    from moto.s3 import utils

    if algorithm == "SHA1":
        return hashlib.sha1(usedforsecurity=False)
    if algorithm == "CRC32C":
        try:
            import crc32c

            return _Crc(crc32c.crc32c, 4)
        except ImportError:
            return _Crc(binascii.crc32, 4)
    if algorithm == "CRC32":
        return _Crc(binascii.crc32, 4)
    if algorithm == "CRC64NVME":
        if getattr(utils, "HAS_CRT", False):  # what moto found importable
            from awscrt import checksums

            return _Crc(checksums.crc64nvme, 8)
        return _Crc(binascii.crc32, 4)
    return hashlib.sha256(usedforsecurity=False)


class StreamedChecksumBuilder:
    """moto's `MultipartChecksumBuilder`, reading the parts a piece at a time instead of joining them."""

    def __init__(self, checksum_algorithm: str | None, checksum_type: str | None) -> None:
        self.checksum_algorithm = checksum_algorithm or "CRC64NVME"
        self.checksum_type = checksum_type or ("FULL_OBJECT" if self.checksum_algorithm == "CRC64NVME" else "COMPOSITE")
        self._part_checksums = bytearray()
        self._whole = running_checksum(self.checksum_algorithm)
        self.part_count = 0

    def add_part(self, part: Any) -> None:
        running = running_checksum(self.checksum_algorithm) if self.checksum_type == "COMPOSITE" else self._whole
        for piece in part_pieces(part):
            running.update(piece)
        if self.checksum_type == "COMPOSITE":
            self._part_checksums.extend(running.digest())
        self.part_count += 1

    def build(self) -> tuple[str, str, int]:
        if self.checksum_type == "COMPOSITE":
            from moto.s3.utils import compute_checksum

            value = compute_checksum(bytes(self._part_checksums), self.checksum_algorithm).decode()
            return self.checksum_type, value, self.part_count
        return self.checksum_type, base64.b64encode(self._whole.digest()).decode(), 1


def complete(multipart: Any, body: Iterator[tuple[int, str]]) -> tuple[ConcatenatedParts, str, tuple[str, str, int]]:
    """`FakeMultipart.complete` without joining the parts: (the object's bytes, its ETag, its checksum)."""
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.settings import S3_UPLOAD_PART_MIN_SIZE

    checksums = StreamedChecksumBuilder(
        multipart.metadata.get("x-amz-checksum-algorithm"), multipart.metadata.get("x-amz-checksum-type")
    )
    md5s = bytearray()
    parts: list[Any] = []
    for number, etag in body:
        part = multipart.parts.get(number)
        part_etag = part.etag.replace('"', "") if part is not None else None
        if part is None or part_etag != etag.replace('"', ""):
            raise InvalidPart()
        if parts and parts[-1].contentsize < S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(bytes.fromhex(str(part_etag)))
        checksums.add_part(part)
        parts.append(part)
    if not parts:
        raise MalformedXML
    etag = f"{hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()}-{len(parts)}"
    return ConcatenatedParts.taken_from(parts), etag, checksums.build()


def install() -> None:
    """Make moto complete multipart uploads without joining their parts in memory (idempotent)."""
    from moto.s3.models import FakeKey, FakeMultipart

    if getattr(FakeMultipart.complete, "streams_parts", False):
        return
    current: Any = FakeKey.__dict__["value"]  # the property itself (s3_ranges may have replaced its getter)

    def set_value(key: Any, new_value: Any) -> None:
        if isinstance(new_value, ConcatenatedParts):
            key._value_buffer.close()
            key._value_buffer = new_value
            key.contentsize = new_value.size
            return
        current.fset(key, new_value)

    FakeKey.value = property(current.fget, set_value)  # type: ignore[assignment,method-assign]
    complete.streams_parts = True  # type: ignore[attr-defined]
    FakeMultipart.complete = complete  # type: ignore[assignment,method-assign]
