"""How a virtual disk is cut into chunks for the Convert map."""

from __future__ import annotations

from diskport.engine import BLOCK_SIZE
from diskport.pipeline.chunk_plan import chunk_size_for, plan_chunks
from hypothesis import given
from hypothesis import strategies as st

GIB = 1024**3


def test_a_disk_with_nothing_allocated_needs_no_chunk() -> None:
    assert plan_chunks([], 40 * GIB, 8 * GIB) == []


def test_chunks_hold_at_most_chunk_bytes_of_allocated_data_and_skip_the_holes_between() -> None:
    # Given two allocated extents far apart, and chunks of four blocks
    ranges = [(0, 3 * BLOCK_SIZE), (100 * BLOCK_SIZE, 103 * BLOCK_SIZE)]
    chunks = plan_chunks(ranges, 200 * BLOCK_SIZE, 4 * BLOCK_SIZE)
    # Then the first chunk takes the first extent and one block of the second; the hole costs nothing
    assert [(chunk.start, chunk.end, chunk.allocated_bytes) for chunk in chunks] == [
        (0, 101 * BLOCK_SIZE, 4 * BLOCK_SIZE),
        (101 * BLOCK_SIZE, 103 * BLOCK_SIZE, 2 * BLOCK_SIZE),
    ]
    assert [chunk.chunk_id for chunk in chunks] == ["000000", "000001"]


def test_unaligned_extents_are_widened_to_whole_blocks_and_the_last_ends_at_the_disk_end() -> None:
    virtual_size = 5 * BLOCK_SIZE + 100
    chunks = plan_chunks(
        [(10, 20), (BLOCK_SIZE - 1, BLOCK_SIZE + 1), (virtual_size - 5, virtual_size)], virtual_size, GIB
    )
    (chunk,) = chunks
    assert (chunk.start, chunk.end) == (0, virtual_size)
    assert chunk.allocated_bytes == 2 * BLOCK_SIZE + 100


@given(
    extents=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), max_size=12),
    blocks_per_chunk=st.integers(1, 9),
    tail=st.integers(0, BLOCK_SIZE - 1),
)
def test_every_allocated_block_lands_in_exactly_one_chunk(
    extents: list[tuple[int, int]], blocks_per_chunk: int, tail: int
) -> None:
    virtual_size = 450 * BLOCK_SIZE + tail
    ranges = [(start * BLOCK_SIZE + 7, min((start + length) * BLOCK_SIZE, virtual_size)) for start, length in extents]
    chunks = plan_chunks(ranges, virtual_size, blocks_per_chunk * BLOCK_SIZE)

    allocated_blocks = {
        index for start, end in ranges if end > start for index in range(start // BLOCK_SIZE, -(-end // BLOCK_SIZE))
    }
    covered = [index for chunk in chunks for index in range(chunk.start // BLOCK_SIZE, -(-chunk.end // BLOCK_SIZE))]
    assert len(covered) == len(set(covered))  # no block in two chunks
    assert allocated_blocks <= set(covered)
    for chunk in chunks:
        assert chunk.start % BLOCK_SIZE == 0
        assert chunk.end % BLOCK_SIZE == 0 or chunk.end == virtual_size
        assert chunk.allocated_bytes <= blocks_per_chunk * BLOCK_SIZE
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))


MIB = 1024**2


def test_a_small_disk_is_cut_into_a_chunk_for_every_worker() -> None:
    # Given 4 GiB of data, 16 workers and a minimum chunk of 128 MiB
    size = chunk_size_for(4 * GIB, workers=16, min_chunk_bytes=128 * MIB, max_chunk_bytes=8 * GIB)
    chunks = plan_chunks([(0, 4 * GIB)], 4 * GIB, size)
    # Then 16 equal chunks run at once
    assert len(chunks) == 16
    assert {chunk.allocated_bytes for chunk in chunks} == {256 * MIB}


def test_a_disk_with_less_data_than_the_minimum_chunk_per_worker_runs_fewer_workers() -> None:
    # Given 1 GiB of data: 8 chunks of the 128 MiB minimum, not 16 of 64 MiB
    size = chunk_size_for(GIB, workers=16, min_chunk_bytes=128 * MIB, max_chunk_bytes=8 * GIB)
    assert len(plan_chunks([(0, GIB)], GIB, size)) == 8
    # And a disk below the minimum is one chunk
    assert (
        len(
            plan_chunks(
                [(0, 10 * MIB)],
                10 * MIB,
                chunk_size_for(10 * MIB, workers=16, min_chunk_bytes=128 * MIB, max_chunk_bytes=8 * GIB),
            )
        )
        == 1
    )


def test_a_large_disk_is_cut_into_whole_waves_of_chunks_no_larger_than_chunk_bytes() -> None:
    # Given 200 GiB of data, more than 16 chunks of 8 GiB
    size = chunk_size_for(200 * GIB, workers=16, min_chunk_bytes=128 * MIB, max_chunk_bytes=8 * GIB)
    chunks = plan_chunks([(0, 200 * GIB)], 200 * GIB, size)
    # Then it is two waves of 16 equal chunks, each at most 8 GiB
    assert len(chunks) == 32
    assert max(chunk.allocated_bytes for chunk in chunks) <= 8 * GIB
    assert max(chunk.allocated_bytes for chunk in chunks) - min(chunk.allocated_bytes for chunk in chunks) <= BLOCK_SIZE


def test_chunk_bytes_caps_the_chunk_even_below_the_minimum() -> None:
    # Given chunks capped at two blocks (as the integration tests configure), the cap wins over the minimum
    size = chunk_size_for(8 * BLOCK_SIZE, workers=16, min_chunk_bytes=128 * MIB, max_chunk_bytes=2 * BLOCK_SIZE)
    assert size == 2 * BLOCK_SIZE


@given(
    data_blocks=st.integers(1, 10**7),
    workers=st.integers(1, 64),
    min_blocks=st.integers(1, 4096),
    max_blocks=st.integers(1, 65536),
)
def test_the_chunk_size_never_exceeds_chunk_bytes_nor_makes_more_chunks_than_waves_of_workers(
    data_blocks: int, workers: int, min_blocks: int, max_blocks: int
) -> None:
    size = chunk_size_for(
        data_blocks * BLOCK_SIZE,
        workers=workers,
        min_chunk_bytes=min_blocks * BLOCK_SIZE,
        max_chunk_bytes=max_blocks * BLOCK_SIZE,
    )
    chunks = -(-data_blocks * BLOCK_SIZE // size)
    assert size <= max_blocks * BLOCK_SIZE
    assert size % BLOCK_SIZE == 0
    waves = -(-data_blocks // (workers * max_blocks))
    assert chunks <= workers * waves
