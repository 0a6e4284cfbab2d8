"""How a virtual disk is cut into chunks for the Convert map."""

from __future__ import annotations

from diskport.engine import BLOCK_SIZE
from diskport.pipeline.chunk_plan import plan_chunks
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
