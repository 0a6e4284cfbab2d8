"""Parser fuzzing with a fixed budget: whatever bytes a file holds, the engine refuses it with the project's own
error or reads it, in bounded memory and time; it never crashes.

Two kinds of input, each from the seed images of every format (`seeds.py`): valid files with bytes overwritten,
bits flipped and tails cut anywhere in their headers and tables; and a format's signature followed by noise.
CI runs DISKPORT_FUZZ_EXAMPLES examples of each (default 150); `make fuzz` runs many more, and atheris
(`tests/fuzz/atheris_parsers.py`) for as long as asked.
"""

from __future__ import annotations

import os
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .exercise import exercise
from .seeds import SEED_NAMES

EXAMPLES = int(os.environ.get("DISKPORT_FUZZ_EXAMPLES", "150"))
MEMORY_BOUND = 64 * 1024 * 1024
SECONDS_BOUND = 5.0
SIGNATURES = [
    b"QFI\xfb\x00\x00\x00\x03",
    b"QFI\xfb\x00\x00\x00\x02",
    b"KDMV\x01\x00\x00\x00",
    b"KDMV\x03\x00\x00\x00",
    b"# Disk DescriptorFile\n",
    b"vhdxfile",
    b"conectix",
    b"QED\x00",
    b"COWD",
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def assert_survives(data: bytes) -> str:
    tracemalloc.start()
    started = time.monotonic()
    try:
        outcome = exercise(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome in {"accepted", "IMG.0057", "IMG.0072"}, outcome
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"
    assert time.monotonic() - started < SECONDS_BOUND
    return outcome


@st.composite
def mutated_seed(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    data = bytearray(seeds[draw(st.sampled_from(SEED_NAMES))])
    # Headers and tables live in the first 256 KiB (VHDX's region and metadata tables included) and the last sector.
    hot_offsets = st.one_of(
        st.integers(0, min(len(data), 256 * 1024) - 1), st.integers(max(0, len(data) - 1024), len(data) - 1)
    )
    for offset, value in draw(st.lists(st.tuples(hot_offsets, st.binary(min_size=1, max_size=8)), max_size=6)):
        data[offset : offset + len(value)] = value
    for offset, bit in draw(st.lists(st.tuples(hot_offsets, st.integers(0, 7)), max_size=6)):
        data[offset] ^= 1 << bit
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def test_mutated_images_are_read_or_refused_never_crash(seeds: dict[str, bytes]) -> None:
    @FUZZ_SETTINGS
    @given(data=mutated_seed(seeds))
    def property_holds(data: bytes) -> None:
        assert_survives(data)

    property_holds()


@FUZZ_SETTINGS
@given(signature=st.sampled_from(SIGNATURES), noise=st.binary(max_size=8192), padding=st.integers(0, 3))
def test_a_signature_followed_by_noise_is_read_or_refused_never_crash(
    signature: bytes, noise: bytes, padding: int
) -> None:
    assert_survives(signature + noise + bytes(512 * padding))
