"""Block checksums: the 16-lane SHA-256 gives exactly hashlib's digests, and the engine uses it where it can."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from diskport.engine import checksums
from hypothesis import given, settings
from hypothesis import strategies as st

BLOCK_SIZE = 524_288


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


CPU_HAS_AVX512 = {"avx512f", "avx512bw"} <= _cpu_flags()

try:
    from diskport.engine import _multibuffer_sha256
except ImportError:  # installed without a C compiler
    _multibuffer_sha256 = None  # type: ignore[assignment]

requires_lanes = pytest.mark.skipif(
    _multibuffer_sha256 is None or not _multibuffer_sha256.supported(),
    reason="the 16-lane SHA-256 needs the compiled module and a CPU with AVX-512F and AVX-512BW",
)


def _hashlib_digests(messages: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(message).digest() for message in messages]


@pytest.mark.skipif(not CPU_HAS_AVX512, reason="this CPU has no AVX-512")
def test_on_a_cpu_with_avx512_blocks_are_hashed_sixteen_at_a_time() -> None:
    # Given this machine's CPU has AVX-512 and the package was installed as the README says
    # Then the engine hashes with the 16-lane SHA-256, not the slower fallback
    assert checksums.hashing_method() == "16-lane AVX-512"


@requires_lanes
@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 4096, BLOCK_SIZE, BLOCK_SIZE - 1])
def test_sixteen_lanes_give_hashlibs_digests_at_every_padding_boundary(length: int) -> None:
    # Given 16 messages of one length, around each place SHA-256 padding changes shape
    generator = random.Random(length)
    messages = [generator.randbytes(length) for _ in range(16)]
    # When they are hashed side by side
    # Then each digest is hashlib's
    assert _multibuffer_sha256.digests(messages) == _hashlib_digests(messages)


@requires_lanes
@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=16), length=st.integers(min_value=0, max_value=3000), seed=st.integers()
)
def test_any_number_of_lanes_up_to_sixteen_gives_hashlibs_digests(count: int, length: int, seed: int) -> None:
    # Given 1 to 16 random messages of one length (unused lanes repeat the first message)
    generator = random.Random(seed)
    messages = [generator.randbytes(length) for _ in range(count)]
    # Then the digests are hashlib's, one per message, in order
    assert _multibuffer_sha256.digests(messages) == _hashlib_digests(messages)


@requires_lanes
def test_lanes_take_any_bytes_like_message() -> None:
    # Given messages as bytes, bytearray and memoryview slices of a larger buffer
    generator = random.Random(7)
    backing = generator.randbytes(16 * 1000)
    messages = [memoryview(backing)[number * 1000 : (number + 1) * 1000] for number in range(14)]
    mixed = [bytes(messages[0]), bytearray(messages[1]), *messages[2:]]
    # Then each is hashed over exactly its own bytes
    assert _multibuffer_sha256.digests(mixed) == _hashlib_digests([bytes(message) for message in messages])


@requires_lanes
@pytest.mark.parametrize(
    ("messages", "error", "message_part"),
    [
        ([], ValueError, "1 to 16 messages, got 0"),
        ([b"x"] * 17, ValueError, "1 to 16 messages, got 17"),
        ([b"ab", b"abc"], ValueError, "message 1 has 3 bytes, not 2"),
        ([b"ab", "ab"], TypeError, "bytes-like object is required"),
        (42, TypeError, "sequence of bytes-like objects"),
    ],
)
def test_lanes_refuse_what_they_cannot_hash(messages: object, error: type[Exception], message_part: str) -> None:
    with pytest.raises(error, match=message_part):
        _multibuffer_sha256.digests(messages)  # type: ignore[arg-type]


@pytest.mark.parametrize("lanes", ["available", "absent"])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 15, 16, 17, 23, 24, 40])
def test_block_digests_are_hashlibs_for_any_count_with_or_without_lanes(
    lanes: str, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run of blocks, on a machine with or without the 16-lane hasher
    if lanes == "absent":
        monkeypatch.setattr(checksums, "LANE_DIGESTS", None)
    elif checksums.LANE_DIGESTS is None:
        pytest.skip("the 16-lane SHA-256 is not available here")
    generator = random.Random(count)
    blocks = [generator.randbytes(BLOCK_SIZE // 64) for _ in range(count)]
    # When their checksums are computed
    # Then each is hashlib's digest of that block, in order
    assert checksums.block_digests(blocks) == _hashlib_digests(blocks)


def test_block_digests_hash_a_group_of_unequal_lengths_one_by_one() -> None:
    # Given sixteen blocks, the last one shorter
    blocks = [bytes([number]) * 1024 for number in range(15)] + [b"short"]
    # Then every digest is still hashlib's
    assert checksums.block_digests(blocks) == _hashlib_digests(blocks)
