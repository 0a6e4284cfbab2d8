"""The LINEAR aggregate checksum EBS checks, the pacing of block writes, and reading chunk checksums ahead."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import pytest
from diskport.pipeline.rate_control import Limits, WriteRate
from diskport.pipeline.register import read_ahead
from diskport.stores.snapshots import LinearChecksum, linear_aggregate_checksum
from diskport.stores.write_leases import Lease


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_the_linear_aggregate_is_the_sha256_of_the_block_digests_in_order() -> None:
    blocks = [b"a" * 10, b"b" * 10, b"c" * 10]
    expected = b64_sha256(b"".join(hashlib.sha256(block).digest() for block in blocks))
    assert linear_aggregate_checksum(b64_sha256(block) for block in blocks) == expected
    # And order matters
    assert linear_aggregate_checksum(b64_sha256(block) for block in reversed(blocks)) != expected


def test_an_aggregate_fed_block_by_block_counts_the_blocks() -> None:
    aggregate = LinearChecksum()
    for block in (b"x", b"y"):
        aggregate.add(b64_sha256(block))
    assert aggregate.count == 2
    assert aggregate.value() == linear_aggregate_checksum([b64_sha256(b"x"), b64_sha256(b"y")])


def test_the_pacer_holds_all_threads_together_to_its_rate() -> None:
    # Given a worker whose rate is 200 requests/s, shared by four threads
    pacer = WriteRate(time.monotonic, holder="a", import_id="job", limits=Limits(200, 1000), planned_workers=1)
    pacer.worker_lease(pacer.claim())
    pacer.renewed({"a": Lease(200, time.monotonic() + 60)}, None)

    def take_slots() -> None:
        for _ in range(10):
            time.sleep(pacer.wait_seconds() or 0)

    threads = [threading.Thread(target=take_slots) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then forty requests took at least 39 intervals of 5 ms, however many threads asked
    assert time.monotonic() - started >= 39 * 0.005


def test_read_ahead_answers_every_read_in_order_with_a_bounded_number_under_way() -> None:
    # Given reads that take longer the earlier their index, and a count of those under way
    lock = threading.Lock()
    under_way, most = [0], [0]

    def read(index: int) -> int:
        with lock:
            under_way[0] += 1
            most[0] = max(most[0], under_way[0])
        time.sleep(0.002 * (20 - index))
        with lock:
            under_way[0] -= 1
        return index * index

    # When twenty are read three at a time
    answers = list(read_ahead(read, range(20), at_once=3))
    # Then the answers come in the order asked, and never more than three reads ran at once (but more than one did)
    assert answers == [index * index for index in range(20)]
    assert 1 < most[0] <= 3


def test_read_ahead_raises_the_first_failed_read_in_its_turn() -> None:
    def read(index: int) -> int:
        if index == 4:
            raise ValueError("chunk 4 left no checksums")
        return index

    taken: list[int] = []
    with pytest.raises(ValueError, match="chunk 4 left no checksums"):
        for answer in read_ahead(read, range(10), at_once=8):
            taken.append(answer)
    assert taken == [0, 1, 2, 3]
