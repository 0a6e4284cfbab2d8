"""Block checksums: each block's digest is the SHA-256 EBS computes, in order, for any number and length of blocks."""

from __future__ import annotations

import hashlib
import random

import pytest
from diskport.engine import checksums
from hypothesis import given, settings
from hypothesis import strategies as st

BLOCK_SIZE = 524_288


def _hashlib_digests(messages: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(message).digest() for message in messages]


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 4096, BLOCK_SIZE, BLOCK_SIZE - 1])
def test_block_digests_are_sha256_at_every_padding_boundary(length: int) -> None:
    # Given 16 messages of one length, around each place SHA-256 padding changes shape
    generator = random.Random(length)
    messages = [generator.randbytes(length) for _ in range(16)]
    # When they are hashed
    # Then each digest is hashlib's
    assert checksums.block_digests(messages) == _hashlib_digests(messages)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=16), length=st.integers(min_value=0, max_value=3000), seed=st.integers()
)
def test_any_number_of_blocks_gives_hashlibs_digests(count: int, length: int, seed: int) -> None:
    generator = random.Random(seed)
    messages = [generator.randbytes(length) for _ in range(count)]
    assert checksums.block_digests(messages) == _hashlib_digests(messages)


def test_blocks_may_be_any_bytes_like_message() -> None:
    # Given messages as bytes, bytearray and memoryview slices of a larger buffer
    generator = random.Random(7)
    backing = generator.randbytes(16 * 1000)
    messages = [memoryview(backing)[number * 1000 : (number + 1) * 1000] for number in range(14)]
    mixed = [bytes(messages[0]), bytearray(messages[1]), *messages[2:]]
    # Then each is hashed over exactly its own bytes
    assert checksums.block_digests(mixed) == _hashlib_digests([bytes(message) for message in messages])


@pytest.mark.parametrize("count", [0, 1, 7, 8, 15, 16, 17, 23, 24, 40])
def test_block_digests_are_hashlibs_for_any_count(count: int) -> None:
    # Given a run of blocks
    generator = random.Random(count)
    blocks = [generator.randbytes(BLOCK_SIZE // 64) for _ in range(count)]
    # When their checksums are computed
    # Then each is hashlib's digest of that block, in order
    assert checksums.block_digests(blocks) == _hashlib_digests(blocks)


def test_block_digests_hash_a_group_of_unequal_lengths() -> None:
    # Given sixteen blocks, the last one shorter
    blocks = [bytes([number]) * 1024 for number in range(15)] + [b"short"]
    # Then every digest is still hashlib's
    assert checksums.block_digests(blocks) == _hashlib_digests(blocks)
