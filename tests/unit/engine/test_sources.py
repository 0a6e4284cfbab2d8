"""Byte sources: a local file, and an S3 object read by ranged GETs pinned to its ETag, through a page cache."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from diskport.engine import BLOCK_SIZE, LocalFileSource, SourceReadError, open_disk
from diskport.stores.source_objects import S3ObjectSource
from moto import mock_aws

from .images import ImageCase

BUCKET = "uploads"
MIB = 1024 * 1024


@pytest.fixture
def s3_client() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload(s3_client: Any, key: str, path: Path) -> S3ObjectSource:
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    head = s3_client.head_object(Bucket=BUCKET, Key=key)
    return S3ObjectSource(s3_client, BUCKET, key, etag=head["ETag"], size=head["ContentLength"])


def record_get_requests(s3_client: Any) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        requests.append(dict(params))

    s3_client.meta.events.register("provide-client-params.s3.GetObject", remember)
    return requests


def test_a_local_file_reads_by_offset_and_short_only_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(bytes(range(256)) * 4)
    with LocalFileSource(path) as source:
        assert source.size == 1024
        assert source.read_at(10, 5) == bytes(range(10, 15))
        assert source.read_at(1020, 100) == bytes(range(252, 256))
        assert source.read_at(2000, 10) == b""


@pytest.mark.parametrize("recipe_name", ["qcow2-v3-zstd", "vmdk-streamOptimized", "vhdx-dynamic", "vhd-dynamic"])
def test_an_s3_object_reads_the_same_blocks_as_the_local_file(
    recipe_name: str, image_cases: dict[str, ImageCase], s3_client: Any
) -> None:
    # Given an image in S3 and the same file on disk
    case = image_cases[recipe_name]
    source = upload(s3_client, f"images/{recipe_name}", case.path)
    with LocalFileSource(case.path) as local, open_disk(local) as local_disk:
        end = -(-local_disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        expected = [(block.index, block.checksum) for block in local_disk.iter_blocks(0, end)]
    # When the engine reads it from S3
    with open_disk(source) as disk:
        ranges = disk.allocated_ranges()
        blocks = [(block.index, block.checksum) for block in disk.iter_blocks(0, end)]
    # Then the blocks are the same, for a number of GETs bounded by the file size, not by the number of lookups
    assert ranges
    assert blocks == expected
    assert source.get_count <= 2 * -(-source.size // MIB) + 8


def test_metadata_lookups_are_served_from_the_page_cache(image_cases: dict[str, ImageCase], s3_client: Any) -> None:
    # Given a qcow2 with 4 KiB clusters, whose hundreds of small L2 entries live in a few pages
    source = upload(s3_client, "small-clusters.qcow2", image_cases["qcow2-v3-4k-clusters"].path)
    # When it is opened and its allocation map is read
    with open_disk(source) as disk:
        disk.allocated_ranges()
    # Then a handful of GETs did it
    assert source.get_count <= 4


def test_every_get_is_ranged_and_pinned_to_the_etag(image_cases: dict[str, ImageCase], s3_client: Any) -> None:
    # Given an image in S3
    source = upload(s3_client, "disk.vhdx", image_cases["vhdx-dynamic"].path)
    requests = record_get_requests(s3_client)
    # When it is opened and read
    with open_disk(source) as disk:
        list(disk.iter_blocks(0, BLOCK_SIZE * 4))
    # Then every GET names a byte range and the ETag noted at the start, and the count says how many were sent
    assert requests
    assert all(request["IfMatch"] == source.etag and request["Range"].startswith("bytes=") for request in requests)
    assert source.get_count == len(requests)


def test_a_file_replaced_during_import_raises_a_source_error(image_cases: dict[str, ImageCase], s3_client: Any) -> None:
    # Given an image opened from S3
    case = image_cases["raw"]
    source = upload(s3_client, "disk.raw", case.path)
    disk = open_disk(source)
    # When the object is overwritten before its data is read
    s3_client.put_object(Bucket=BUCKET, Key="disk.raw", Body=b"something else entirely")
    # Then the next read fails with a reason saying the file changed during import
    with pytest.raises(SourceReadError, match="changed during import"):
        list(disk.iter_blocks(0, BLOCK_SIZE * 16))
    disk.close()


def test_a_file_deleted_during_import_raises_a_source_error(image_cases: dict[str, ImageCase], s3_client: Any) -> None:
    source = upload(s3_client, "disk.raw", image_cases["raw"].path)
    s3_client.delete_object(Bucket=BUCKET, Key="disk.raw")
    with pytest.raises(SourceReadError, match="deleted during import"):
        source.read_at(0, 10)


def test_the_page_cache_keeps_at_most_its_page_count(image_cases: dict[str, ImageCase], s3_client: Any) -> None:
    # Given a source with a two-page cache of 64 KiB pages
    case = image_cases["raw"]
    s3_client.put_object(Bucket=BUCKET, Key="disk.raw", Body=case.path.read_bytes())
    etag = s3_client.head_object(Bucket=BUCKET, Key="disk.raw")["ETag"]
    source = S3ObjectSource(
        s3_client, BUCKET, "disk.raw", etag=etag, size=case.path.stat().st_size, page_size=65_536, cache_pages=2
    )
    content = case.path.read_bytes()
    # When small reads touch three pages, then come back to the first
    for offset in (0, 70_000, 140_000, 10):
        assert source.read_at(offset, 100) == content[offset : offset + 100]
    # Then the first page had been evicted and was fetched again; a read of a page or more bypasses the cache
    assert source.get_count == 4
    assert source.read_at(0, 65_536) == content[:65_536]
    assert source.get_count == 5


class SlowS3:
    """An S3 client whose GETs take a while, recording how many were under way at once."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def get_object(self, **request: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            return self._client.get_object(**request)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_the_tables_of_a_qcow2_are_fetched_side_by_side(tmp_path: Path, s3_client: Any) -> None:
    # Given a 64 MiB qcow2 of 4 KiB clusters with all its 32 L2 tables allocated, read from S3 in 8 KiB pages
    path = tmp_path / "tables.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,preallocation=metadata", str(path), "64M"],
        check=True,
    )
    with LocalFileSource(path) as local, open_disk(local) as local_disk:
        expected = local_disk.allocated_ranges()
    s3_client.put_object(Bucket=BUCKET, Key="tables.qcow2", Body=path.read_bytes())
    etag = s3_client.head_object(Bucket=BUCKET, Key="tables.qcow2")["ETag"]
    slow = SlowS3(s3_client)
    source = S3ObjectSource(slow, BUCKET, "tables.qcow2", etag=etag, size=path.stat().st_size, page_size=8192)

    # When its allocation map is read
    with open_disk(source) as disk:
        ranges = disk.allocated_ranges()

    # Then it is the same map, its tables came several GETs at a time, and no page was fetched twice
    assert ranges == expected
    assert slow.most_in_flight >= 4
    assert source.get_count <= 32 + 4
