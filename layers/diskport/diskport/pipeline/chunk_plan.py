"""How the virtual disk is cut into chunks, one convert invocation each.

A chunk is a block-aligned range of the virtual disk holding at most a chunk size of allocated data. Only
allocated data costs time (unallocated ranges are skipped from the format's tables without a read), so a chunk
may span much more of the disk than it holds. Chunks never share a 512 KiB block, so two workers never write
the same snapshot block.

Sizing (`chunk_size_for`): one import's speed is bound by EBS's 1,000 PutSnapshotBlock requests/s per snapshot
(500 MiB/s), and one function's network carries ~75 MiB/s, so a disk must run several workers to reach the
quota: the data is cut into min(`ConvertConcurrency`, data / `min_chunk_bytes`) equal chunks, as many as run
at once, so they finish together. `min_chunk_bytes` is the least data worth starting a worker for (its start
costs about a second: a Map child execution and a Lambda start); `bench/pipeline_model.py` measured where
smaller chunks stop paying. A disk with more data than `ConvertConcurrency` chunks of `ChunkBytes` is cut
into whole waves of `ConvertConcurrency` equal chunks of at most `ChunkBytes`: at the smallest share of the
snapshot quota a worker gets (970/s / 16 workers, ~30 MiB/s) an 8 GiB chunk takes ~4.5 minutes, a third of
Lambda's 15, which leaves room for a slower share when other imports run in the account and for a retried
chunk to start over within its own invocation.
"""

from __future__ import annotations

from diskport.engine import BLOCK_SIZE
from diskport.stores.work_files import Chunk

# The most chunks a plan may have to travel in the state machine's data and run in its Inline Map (the state
# machine's Choice compares with the same number): Step Functions runs at most 40 iterations of an Inline Map at once,
# and 40 chunks are ~4 KB of the 256 KiB a state's input may hold. A larger plan is read from S3 by the Distributed
# Map, whose every chunk starts as a child execution.
INLINE_MAP_MAX_CHUNKS = 40


def chunk_size_for(data_bytes: int, *, workers: int, min_chunk_bytes: int, max_chunk_bytes: int) -> int:
    """The allocated bytes per chunk (whole blocks) that cut `data_bytes` into equal chunks, as described above."""
    data_blocks = -(-data_bytes // BLOCK_SIZE)
    max_blocks = max(1, max_chunk_bytes // BLOCK_SIZE)
    min_blocks = min(max_blocks, max(1, min_chunk_bytes // BLOCK_SIZE))
    workers = max(1, workers)
    waves = max(1, -(-data_blocks // (workers * max_blocks)))
    chunks = max(1, min(-(-data_blocks // min_blocks), workers * waves))
    return max(1, -(-data_blocks // chunks)) * BLOCK_SIZE


def allocated_blocks_bytes(allocated_ranges: list[tuple[int, int]], virtual_size: int) -> int:
    """The bytes of the whole blocks that hold allocated data: what the chunks will cover."""
    return sum(
        -(-(end - start) // BLOCK_SIZE) * BLOCK_SIZE for start, end in _block_aligned(allocated_ranges, virtual_size)
    )


def plan_chunks(allocated_ranges: list[tuple[int, int]], virtual_size: int, chunk_bytes: int) -> list[Chunk]:
    """Chunks covering every allocated byte, each with at most `chunk_bytes` allocated (rounded to blocks)."""
    blocks_per_chunk = max(1, chunk_bytes // BLOCK_SIZE)
    chunks: list[Chunk] = []
    chunk_start: int | None = None
    chunk_end = chunk_blocks = chunk_allocated = 0
    for start, end in _block_aligned(allocated_ranges, virtual_size):
        position = start
        while position < end:
            if chunk_start is None:
                chunk_start, chunk_blocks, chunk_allocated = position, 0, 0
            take = min(end - position, (blocks_per_chunk - chunk_blocks) * BLOCK_SIZE)
            position += take
            chunk_blocks += -(-take // BLOCK_SIZE)
            chunk_allocated += take
            chunk_end = position
            if chunk_blocks >= blocks_per_chunk:
                chunks.append(
                    Chunk(index=len(chunks), start=chunk_start, end=chunk_end, allocated_bytes=chunk_allocated)
                )
                chunk_start = None
    if chunk_start is not None:
        chunks.append(Chunk(index=len(chunks), start=chunk_start, end=chunk_end, allocated_bytes=chunk_allocated))
    return chunks


def _block_aligned(ranges: list[tuple[int, int]], virtual_size: int) -> list[tuple[int, int]]:
    """The ranges widened to whole blocks (the last one ends at the disk's end), sorted and merged."""
    aligned: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        end = min(end, virtual_size)
        if end <= start:
            continue
        block_start = start // BLOCK_SIZE * BLOCK_SIZE
        block_end = min(-(-end // BLOCK_SIZE) * BLOCK_SIZE, virtual_size)
        if aligned and block_start <= aligned[-1][1]:
            aligned[-1] = (aligned[-1][0], max(aligned[-1][1], block_end))
        else:
            aligned.append((block_start, block_end))
    return aligned
