"""The LINEAR aggregate checksum EBS checks at CompleteSnapshot, and the pacing of block writes."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

from diskport.pipeline.rate_control import Limits, WriteRate
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
