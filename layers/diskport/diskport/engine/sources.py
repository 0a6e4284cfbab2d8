"""Byte sources: where the image file's bytes come from.

The engine never holds an image in memory or on disk. It reads the file by offset through a `ByteSource`,
either a local file (tests, the bench, local mode) or an S3 object read with ranged GETs pinned to the ETag
noted when the import started, so that every read of one import sees the same version of the file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from botocore.exceptions import ClientError

from .errors import SourceReadError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MIB = 1024 * 1024


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


class S3ObjectSource:
    """An S3 object read with ranged GETs, each pinned to the ETag with `IfMatch`.

    Small reads (headers, tables) go through a cache of `cache_pages` pages of `page_size` bytes, so that the
    many small metadata lookups of a format become a few GETs. Reads of a page or more (the data of the disk)
    bypass the cache with one GET for the whole range. `get_count` counts every GET sent.
    """

    # Each GET is a round trip: the engine merges contiguous data into large reads.
    coalesce_reads = True

    def __init__(
        self,
        s3_client: S3Client,
        bucket: str,
        key: str,
        *,
        etag: str,
        size: int,
        page_size: int = MIB,
        cache_pages: int = 64,
        bucket_owner: str | None = None,
    ) -> None:
        if page_size <= 0 or cache_pages <= 0:
            raise ValueError("page_size and cache_pages must be positive")
        self._s3_client = s3_client
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self._size = size
        self.page_size = page_size
        self.cache_pages = cache_pages
        # S3 refuses every read when another account owns the bucket (ExpectedBucketOwner).
        self._owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}
        self.get_count = 0
        self._pages: OrderedDict[int, bytes] = OrderedDict()
        # The engine's worker threads read data ranges concurrently: the cache and the count are guarded.
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        length = readable_length(offset, length, self._size)
        if length == 0:
            return b""
        end = offset + length
        if end - offset >= self.page_size:
            return self._get_range(offset, end)
        first_page = offset // self.page_size
        last_page = (end - 1) // self.page_size
        with self._lock:
            pages = self._cached_pages(first_page, last_page)
        joined = pages[0] if len(pages) == 1 else b"".join(pages)
        start_in_joined = offset - first_page * self.page_size
        return joined[start_in_joined : start_in_joined + (end - offset)]

    def _cached_pages(self, first_page: int, last_page: int) -> list[bytes]:
        missing = [number for number in range(first_page, last_page + 1) if number not in self._pages]
        if missing:
            # The missing pages of one read are contiguous or nearly so: one GET covers them all.
            start = missing[0] * self.page_size
            end = min((missing[-1] + 1) * self.page_size, self._size)
            fetched = self._get_range(start, end)
            for number in range(missing[0], missing[-1] + 1):
                page_start = (number - missing[0]) * self.page_size
                self._pages[number] = fetched[page_start : page_start + self.page_size]
        pages = []
        for number in range(first_page, last_page + 1):
            self._pages.move_to_end(number)
            pages.append(self._pages[number])
        while len(self._pages) > max(self.cache_pages, last_page - first_page + 1):
            self._pages.popitem(last=False)
        return pages

    def _get_range(self, start: int, end: int) -> bytes:
        with self._count_lock:
            self.get_count += 1
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Range": f"bytes={start}-{end - 1}",
            "IfMatch": self.etag,
            **self._owner,
        }
        try:
            response = self._s3_client.get_object(**request)
            body: bytes = response["Body"].read()
        except ClientError as error:
            source_error = _source_error(error, self.bucket, self.key)
            if source_error is None:
                raise  # throttling or a service fault: the step's retry policy decides, not the image
            raise source_error from error
        if len(body) != end - start:
            raise SourceReadError(
                f"Reading s3://{self.bucket}/{self.key} returned {len(body)} bytes instead of {end - start}: "
                "the file changed during import; upload it again and start a new import."
            )
        return body


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


def _source_error(error: ClientError, bucket: str, key: str) -> SourceReadError | None:
    """The job-failing error for what the file itself did; None for passing trouble (throttling, 5xx) to retry."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    location = f"s3://{bucket}/{key}"
    if code in {"PreconditionFailed", "412"} or status == 412:
        return SourceReadError(
            f"The image file {location} changed during import (its ETag no longer matches): "
            "leave the file unchanged while it is imported, then start a new import."
        )
    if code in {"NoSuchKey", "404", "NotFound"} or status == 404:
        return SourceReadError(
            f"The image file {location} was deleted during import: upload it again and start a new import."
        )
    if code in {"AccessDenied", "403"} or status == 403:
        return SourceReadError(
            f"Reading the image file {location} was denied: grant the import service s3:GetObject on it, then "
            "start a new import."
        )
    if code == "InvalidObjectState":
        return SourceReadError(
            f"The image file {location} is archived: restore it to the STANDARD storage class, then start a new import."
        )
    return None
