"""The emulator's server answers ranged reads of large objects, plain or multipart, with exactly their bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from diskport_emulator import install_strict_services

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    install_strict_services()
    running = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    running.start()
    client = boto3.client(  # type: ignore[call-overload]
        "s3",
        endpoint_url=f"http://127.0.0.1:{running.get_host_and_port()[1]}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="images")
    yield client
    running.stop()


def ranges_of(size: int) -> list[tuple[int, int]]:
    """Small and large ranges, from the start, across the middle, to the end."""
    return [(0, 99), (0, 2 * MIB - 1), (5 * MIB - 7, 7 * MIB + 5), (size - 3 * MIB, size - 1), (MIB, size - 1)]


def test_ranged_reads_of_a_large_object_answer_exactly_their_bytes(s3: Any) -> None:
    data = os.urandom(12 * MIB + 11)
    s3.put_object(Bucket="images", Key="plain.qcow2", Body=data)

    for first, last in ranges_of(len(data)):
        answer = s3.get_object(Bucket="images", Key="plain.qcow2", Range=f"bytes={first}-{last}")
        assert (answer["ContentLength"], answer["Body"].read()) == (last - first + 1, data[first : last + 1])


def test_ranged_reads_of_a_multipart_object_cross_its_parts_exactly(s3: Any) -> None:
    parts = [os.urandom(5 * MIB), os.urandom(6 * MIB + 1), os.urandom(MIB + 3)]
    data = b"".join(parts)
    upload_id = s3.create_multipart_upload(Bucket="images", Key="parts.qcow2")["UploadId"]
    listed = [
        {"PartNumber": number, "ETag": s3.upload_part(**where, PartNumber=number, Body=part)["ETag"]}
        for number, part in enumerate(parts, start=1)
        for where in [{"Bucket": "images", "Key": "parts.qcow2", "UploadId": upload_id}]
    ]
    s3.complete_multipart_upload(
        Bucket="images", Key="parts.qcow2", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )

    for first, last in ranges_of(len(data)):
        answer = s3.get_object(Bucket="images", Key="parts.qcow2", Range=f"bytes={first}-{last}")
        assert answer["Body"].read() == data[first : last + 1]


def test_a_read_streaming_while_the_object_is_overwritten_answers_the_object_it_began_with(s3: Any) -> None:
    before, after = os.urandom(8 * MIB), os.urandom(8 * MIB)
    s3.put_object(Bucket="images", Key="changing.qcow2", Body=before)
    answer = s3.get_object(Bucket="images", Key="changing.qcow2", Range=f"bytes=0-{8 * MIB - 1}")
    first_piece = answer["Body"].read(1024)

    s3.put_object(Bucket="images", Key="changing.qcow2", Body=after)

    assert first_piece + answer["Body"].read() == before
