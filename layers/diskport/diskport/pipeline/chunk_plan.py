"""How the virtual disk is cut into chunks, one convert invocation each.

A chunk is a block-aligned range of the virtual disk holding at most `chunk_bytes` of allocated data. Only
allocated data costs time (unallocated ranges are skipped from the format's tables without a read), so a chunk
may span much more of the disk than it holds. Chunks never share a 512 KiB block, so two workers never write
the same snapshot block.

Sizing: a convert worker writes at most its share of the snapshot's PutSnapshotBlock quota, 900 / 16 workers
≈ 56 blocks/s ≈ 28 MiB/s (see `convert`). The engine decodes faster than that: `bench/engine_bench.py` measures
95 MB/s for its slowest format (zlib-compressed qcow2) on one shared core, so even a Lambda at half that speed
keeps up. The default 8 GiB chunk therefore takes about 5 minutes (8 GiB / 28 MiB/s), a third of Lambda's
15-minute limit, leaving room for a retried chunk to start over within its own invocation.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from diskport.engine import BLOCK_SIZE


class Chunk(BaseModel):
    """One item of the Convert map: [start, end) of the virtual disk, block-aligned (end may be the disk's end)."""

    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    allocated_bytes: int = Field(ge=0, description="Bytes of [start, end) the image's tables mark allocated.")

    @property
    def chunk_id(self) -> str:
        return chunk_id_of(self.index)


def chunk_id_of(index: int) -> str:
    """A chunk's name in work files and progress records: its index, zero-padded so names sort in disk order."""
    return f"{index:06d}"


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
