"""The source image file in S3: found, readable, in storage class Standard, not empty — noted by its ETag —
and read by ranged GETs pinned to that ETag, as a byte source the engine opens.

This module is the only code that reads the user's bucket.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from diskport.engine.errors import SourceReadError
from diskport.engine.sources import readable_length
from diskport.errors import SourceError
from diskport.stores import aws, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MIB = 1024 * 1024
# Pages fetched side by side when the engine says which small reads come next (`S3ObjectSource.prefetch`).
PREFETCH_AT_ONCE = 8


class SourceObject(BaseModel):
    """The version of the file an import reads: every later read is pinned to `etag`."""

    bucket: str
    key: str
    etag: str
    size: int
    storage_class: str = "STANDARD"
    # The account that must own the bucket (S3 refuses every read otherwise); None: no check (local mode).
    bucket_owner: str | None = None

    @property
    def location(self) -> str:
        return f"{self.bucket}:{self.key}"


class SourceObjects:
    """The user's source buckets."""

    def __init__(self, s3_client: Any | None = None) -> None:
        self._s3 = s3_client if s3_client is not None else aws.client("s3")

    def find(
        self, bucket: str, key: str, *, expected_etag: str | None = None, bucket_owner: str | None = None
    ) -> SourceObject:
        """The source object's facts, or the SourceError that tells the user what is wrong with it (`find_source`)."""
        return find_source(bucket, key, self._s3, expected_etag=expected_etag, bucket_owner=bucket_owner)

    def reader(self, source: SourceObject) -> S3ObjectSource:
        """The object's bytes, every read pinned to the version `find` saw."""
        return S3ObjectSource(
            self._s3, source.bucket, source.key, etag=source.etag, size=source.size, bucket_owner=source.bucket_owner
        )


def find_source(
    bucket: str,
    key: str,
    s3_client: Any,
    *,
    expected_etag: str | None = None,
    bucket_owner: str | None = None,
) -> SourceObject:
    """The source object's facts, or the SourceError that tells the user what is wrong with it.

    With `expected_etag`, only that version of the file will do: a file replaced since is refused. With
    `bucket_owner`, S3 answers 403 (IMG.0069) for a bucket another account owns.
    """
    owner = {"ExpectedBucketOwner": bucket_owner} if bucket_owner else {}
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key, **owner)
    except ClientError as error:
        if aws_errors.is_transient(error):
            raise
        # Only a refused HEAD costs the round trip that tells the bucket's fault from the object's.
        _check_bucket(s3_client, bucket, owner)
        if aws_errors.http_status(error) == 404:
            raise SourceError(
                f"The object '{key}' does not exist in bucket '{bucket}'; check image_url.", code="IMG.0121"
            ) from error
        if aws_errors.is_denied(error):
            raise SourceError(
                f"The service may not read '{key}' in bucket '{bucket}': grant it s3:GetObject on the object."
            ) from error
        raise
    if expected_etag is not None and head["ETag"].strip('"') != expected_etag.strip('"'):
        raise SourceError(
            f"The object '{key}' in bucket '{bucket}' was replaced after this import was requested; "
            "the file that replaced it is imported by its own job."
        )
    storage_class = str(head.get("StorageClass") or "STANDARD")
    if storage_class != "STANDARD":
        raise SourceError(
            f"The object '{key}' is in storage class {storage_class}; only Standard objects can be imported. "
            "Copy it to the Standard storage class, then import it again."
        )
    size = int(head["ContentLength"])
    if size == 0:
        raise SourceError(f"The object '{key}' in bucket '{bucket}' is empty (0 bytes).")
    return SourceObject(
        bucket=bucket,
        key=key,
        etag=str(head["ETag"]),
        size=size,
        storage_class=storage_class,
        bucket_owner=bucket_owner,
    )


def _check_bucket(s3_client: Any, bucket: str, owner: dict[str, str]) -> None:
    # HEAD on a missing object of an unreadable bucket answers 403 like a missing bucket does; asking about the
    # bucket tells "no such object" (IMG.0121) from "no access to the bucket" (IMG.0069).
    try:
        s3_client.head_bucket(Bucket=bucket, **owner)
    except ClientError as error:
        if aws_errors.is_throttling(error):
            raise
        if aws_errors.http_status(error) in (301, 400, 403, 404):
            reason = "does not exist" if aws_errors.http_status(error) == 404 else "cannot be read by the service"
            raise SourceError(
                f"The bucket '{bucket}' {reason}: check image_url and the bucket policy.", code="IMG.0069"
            ) from error
        raise


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

    def prefetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Fetch the uncached pages of these small reads (a format's next tables) side by side, up to
        `PREFETCH_AT_ONCE` GETs at a time and half the cache in all, so that reading them costs one round trip."""
        wanted: list[int] = []
        with self._lock:
            for offset, length in ranges:
                if length <= 0 or length >= self.page_size or offset < 0 or offset + length > self._size:
                    continue
                for number in range(offset // self.page_size, (offset + length - 1) // self.page_size + 1):
                    if number not in self._pages and number not in wanted:
                        wanted.append(number)
        wanted = wanted[: max(1, self.cache_pages // 2)]
        if len(wanted) < 2:  # one page comes as soon with the read that needs it
            return
        with ThreadPoolExecutor(min(PREFETCH_AT_ONCE, len(wanted)), thread_name_prefix="diskport-prefetch") as pool:
            fetched = list(pool.map(self._page, wanted))
        with self._lock:
            for number, data in zip(wanted, fetched, strict=True):
                self._pages[number] = data
                self._pages.move_to_end(number)
            while len(self._pages) > self.cache_pages:
                self._pages.popitem(last=False)

    def _page(self, number: int) -> bytes:
        return self._get_range(number * self.page_size, min((number + 1) * self.page_size, self._size))

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


def _source_error(error: ClientError, bucket: str, key: str) -> SourceReadError | None:
    """The job-failing error for what the file itself did; None for passing trouble (throttling, 5xx) to retry."""
    location = f"s3://{bucket}/{key}"
    if aws_errors.is_precondition_failed(error):
        return SourceReadError(
            f"The image file {location} changed during import (its ETag no longer matches): "
            "leave the file unchanged while it is imported, then start a new import."
        )
    if aws_errors.is_gone(error):
        return SourceReadError(
            f"The image file {location} was deleted during import: upload it again and start a new import."
        )
    if aws_errors.is_denied(error):
        return SourceReadError(
            f"Reading the image file {location} was denied: grant the import service s3:GetObject on it, then "
            "start a new import."
        )
    if aws_errors.error_code(error) == "InvalidObjectState":
        return SourceReadError(
            f"The image file {location} is archived: restore it to the STANDARD storage class, then start a new import."
        )
    return None
