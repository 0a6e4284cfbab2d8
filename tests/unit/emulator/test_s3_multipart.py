"""The emulator completes a multipart upload as S3 does, without assembling the object in memory."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from awscrt import checksums
from botocore.exceptions import ClientError
from moto import mock_aws

from diskport_emulator import install_strict_services

MIB = 1024 * 1024
# Two parts of S3's 5 MiB minimum and more, and a short last one.
PART_SIZES = (5 * MIB, 6 * MIB + 3, MIB + 7)


@pytest.fixture
def s3() -> Iterator[Any]:
    install_strict_services()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="uploads")
        yield client


def upload(s3: Any, key: str, parts: list[bytes], **create: Any) -> dict[str, Any]:
    upload_id = s3.create_multipart_upload(Bucket="uploads", Key=key, **create)["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(Bucket="uploads", Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        listed.append({"PartNumber": number, "ETag": answer["ETag"]})
    completed: dict[str, Any] = s3.complete_multipart_upload(
        Bucket="uploads", Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    return completed


def random_parts(sizes: tuple[int, ...] = PART_SIZES) -> list[bytes]:
    return [os.urandom(size) for size in sizes]


def multipart_etag(parts: list[bytes]) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, then "-" and the number of parts."""
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_a_completed_upload_has_the_multipart_etag_and_exactly_the_parts_bytes(s3: Any) -> None:
    parts = random_parts()
    whole = b"".join(parts)

    completed = upload(s3, "image.qcow2", parts)

    assert completed["ETag"] == multipart_etag(parts)
    head = s3.head_object(Bucket="uploads", Key="image.qcow2")
    assert (head["ContentLength"], head["ETag"]) == (len(whole), multipart_etag(parts))
    assert s3.get_object(Bucket="uploads", Key="image.qcow2")["Body"].read() == whole


def test_ranged_reads_of_a_completed_upload_cross_part_boundaries_exactly(s3: Any) -> None:
    parts = random_parts()
    whole = b"".join(parts)
    upload(s3, "image.qcow2", parts)
    boundary = PART_SIZES[0]

    for first, last in [(0, 99), (boundary - 10, boundary + 9), (boundary - 1, len(whole) - 1), (len(whole) - 5, None)]:
        requested = f"bytes={first}-{'' if last is None else last}"
        answer = s3.get_object(Bucket="uploads", Key="image.qcow2", Range=requested, IfMatch=multipart_etag(parts))
        end = len(whole) - 1 if last is None else last
        assert answer["ContentRange"] == f"bytes {first}-{end}/{len(whole)}"
        assert answer["Body"].read() == whole[first : end + 1]


def test_a_head_of_one_part_answers_that_parts_length_and_the_parts_count(s3: Any) -> None:
    parts = random_parts()
    upload(s3, "image.qcow2", parts)

    head = s3.head_object(Bucket="uploads", Key="image.qcow2", PartNumber=2)

    assert (head["ContentLength"], head["PartsCount"]) == (PART_SIZES[1], len(parts))


def test_a_copy_of_a_completed_upload_holds_the_same_bytes(s3: Any) -> None:
    parts = random_parts()
    upload(s3, "image.qcow2", parts)

    s3.copy_object(Bucket="uploads", Key="copy.qcow2", CopySource={"Bucket": "uploads", "Key": "image.qcow2"})

    assert s3.get_object(Bucket="uploads", Key="copy.qcow2")["Body"].read() == b"".join(parts)


def test_a_crc64nvme_checksum_covers_the_whole_object(s3: Any) -> None:
    parts = random_parts()
    upload(s3, "image.qcow2", parts, ChecksumAlgorithm="CRC64NVME")

    answer = s3.get_object(Bucket="uploads", Key="image.qcow2", ChecksumMode="ENABLED")

    expected = base64.b64encode(checksums.crc64nvme(b"".join(parts)).to_bytes(8, "big")).decode()
    assert (answer["ChecksumCRC64NVME"], answer["ChecksumType"]) == (expected, "FULL_OBJECT")


def test_a_full_object_crc32_covers_the_whole_object(s3: Any) -> None:
    parts = random_parts()
    upload(s3, "image.qcow2", parts, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")

    answer = s3.get_object(Bucket="uploads", Key="image.qcow2", ChecksumMode="ENABLED")

    expected = base64.b64encode(binascii.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
    assert (answer["ChecksumCRC32"], answer["ChecksumType"]) == (expected, "FULL_OBJECT")


def test_a_composite_sha256_is_the_checksum_of_the_parts_checksums_and_their_count(s3: Any) -> None:
    parts = random_parts()
    upload(s3, "image.qcow2", parts, ChecksumAlgorithm="SHA256")

    answer = s3.get_object(Bucket="uploads", Key="image.qcow2", ChecksumMode="ENABLED")

    of_parts = hashlib.sha256(b"".join(hashlib.sha256(part).digest() for part in parts)).digest()
    assert answer["ChecksumSHA256"] == f"{base64.b64encode(of_parts).decode()}-{len(parts)}"
    assert answer["ChecksumType"] == "COMPOSITE"


def test_a_part_listed_with_another_etag_is_refused(s3: Any) -> None:
    upload_id = s3.create_multipart_upload(Bucket="uploads", Key="image.qcow2")["UploadId"]
    s3.upload_part(Bucket="uploads", Key="image.qcow2", UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MIB)

    with pytest.raises(ClientError) as refused:
        s3.complete_multipart_upload(
            Bucket="uploads",
            Key="image.qcow2",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f'"{hashlib.md5(b"b").hexdigest()}"'}]},
        )

    assert refused.value.response["Error"]["Code"] == "InvalidPart"


def test_a_part_below_five_mib_before_the_last_is_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as refused:
        upload(s3, "image.qcow2", random_parts((MIB, 5 * MIB)))

    assert refused.value.response["Error"]["Code"] == "EntityTooSmall"


def test_completing_an_upload_does_not_hold_the_object_in_memory(s3: Any) -> None:
    parts = random_parts((8 * MIB, 8 * MIB, 8 * MIB, 8 * MIB))
    upload_id = s3.create_multipart_upload(Bucket="uploads", Key="image.qcow2")["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(Bucket="uploads", Key="image.qcow2", UploadId=upload_id, PartNumber=number, Body=data)
        listed.append({"PartNumber": number, "ETag": answer["ETag"]})
    del parts, data

    tracemalloc.start()
    try:
        s3.complete_multipart_upload(
            Bucket="uploads", Key="image.qcow2", UploadId=upload_id, MultipartUpload={"Parts": listed}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 12 * MIB  # moto alone joins the 32 MiB object several times over
