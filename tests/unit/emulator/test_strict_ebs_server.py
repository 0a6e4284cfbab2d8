"""The emulator's server answers PutSnapshotBlock as the strict EBS does in-process, and keeps connections open."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from diskport_emulator import iam, install_strict_services
from diskport_emulator.services.ebs import BLOCK_SIZE
from tests.support.ebs_requests import checksum, put, refusal

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
BLOCK = b"\xc3" * BLOCK_SIZE
OTHER = b"\x3c" * BLOCK_SIZE


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ThreadedMotoServer, str]]:
    install_strict_services()
    running = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    running.start()
    yield running, f"http://127.0.0.1:{running.get_host_and_port()[1]}"
    running.stop()


def client(url: str, service: str, key: tuple[str, str] = ("testing", "testing")) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=NO_RETRIES,
    )


@pytest.fixture
def ebs(server: tuple[ThreadedMotoServer, str]) -> Any:
    return client(server[1], "ebs")


def test_a_written_block_answers_its_checksum_and_reads_back_exactly(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]

    answer = put(ebs, snapshot_id, 7, BLOCK)

    assert (answer["ResponseMetadata"]["HTTPStatusCode"], answer["Checksum"], answer["ChecksumAlgorithm"]) == (
        201,
        checksum(BLOCK),
        "SHA256",
    )
    (listed,) = ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
    read = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=7, BlockToken=listed["BlockToken"])
    assert (listed["BlockIndex"], read["BlockData"].read()) == (7, BLOCK)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"Checksum": checksum(OTHER)}, ("ValidationException", "INVALID_PARAMETER_VALUE", 400)),
        ({"BlockData": BLOCK[:4096], "DataLength": 4096}, ("ValidationException", "INVALID_PARAMETER_VALUE", 400)),
        ({"BlockData": BLOCK[:-1], "DataLength": BLOCK_SIZE}, ("ValidationException", "INVALID_PARAMETER_VALUE", 400)),
        ({"BlockIndex": 2048}, ("ValidationException", "INVALID_BLOCK", 400)),
        ({"SnapshotId": "snap-00000000000000000"}, ("ResourceNotFoundException", "SNAPSHOT_NOT_FOUND", 404)),
    ],
)
def test_a_block_the_ebs_refuses_is_answered_as_ebs_refuses_it_and_not_kept(
    ebs: Any, overrides: dict[str, Any], expected: tuple[str, str, int]
) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]

    answer = refusal(lambda: put(ebs, snapshot_id, 0, BLOCK, **overrides))

    assert answer == expected
    assert ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"] == []


def test_writes_beyond_the_snapshots_rate_are_throttled(ebs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISKPORT_EBS_PUT_RATE_PER_SNAPSHOT", "2")
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    put(ebs, snapshot_id, 0, BLOCK)
    put(ebs, snapshot_id, 1, BLOCK)

    answer = refusal(lambda: put(ebs, snapshot_id, 2, BLOCK))

    assert answer == ("RequestThrottledException", "RESOURCE_LEVEL_THROTTLE", 400)


def test_with_iam_enforced_a_caller_without_the_permission_cannot_write_a_block(
    server: tuple[ThreadedMotoServer, str],
) -> None:
    url = server[1]
    admin = client(url, "iam")

    def caller(name: str, actions: list[str]) -> Any:
        admin.create_user(UserName=name)
        allowed = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [allowed]})
        admin.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=policy)
        key = admin.create_access_key(UserName=name)["AccessKey"]
        return client(url, "ebs", (key["AccessKeyId"], key["SecretAccessKey"]))

    writer = caller("writer", ["ebs:StartSnapshot", "ebs:PutSnapshotBlock", "ebs:ListSnapshotBlocks"])
    starter = caller("starter", ["ebs:StartSnapshot"])
    snapshot_id = writer.start_snapshot(VolumeSize=1)["SnapshotId"]
    iam.turn_enforcement_on()
    try:
        _, _, status = refusal(lambda: put(starter, snapshot_id, 0, BLOCK))  # moto's access denial, as before
        kept_after_refusal = writer.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
        written = put(writer, snapshot_id, 0, BLOCK)
    finally:
        iam.turn_enforcement_off()

    assert (status, kept_after_refusal) == (403, [])
    assert written["Checksum"] == checksum(BLOCK)


def test_one_connection_carries_several_requests_even_when_a_body_is_left_unread(
    server: tuple[ThreadedMotoServer, str],
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server[0].get_host_and_port()[1], timeout=10)
    try:
        answers, sockets = [], []
        for body in (b"", b"a body no one reads", b""):
            connection.request("GET", "/moto-api/data.json", body=body)
            answer = connection.getresponse()
            answer.read()
            answers.append((answer.status, answer.getheader("Connection")))
            sockets.append(connection.sock)
        assert answers == [(200, None)] * 3
        assert sockets[0] is not None and all(used is sockets[0] for used in sockets)
    finally:
        connection.close()


def test_stopping_the_server_closes_the_connections_it_kept_open() -> None:
    install_strict_services()
    running = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    running.start()
    connection = http.client.HTTPConnection("127.0.0.1", running.get_host_and_port()[1], timeout=10)
    connection.request("GET", "/moto-api/data.json")
    connection.getresponse().read()
    assert connection.sock is not None

    running.stop()

    assert connection.sock.recv(1) == b""  # the server's end is closed
    connection.close()
