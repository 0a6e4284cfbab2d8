"""A small plan runs in the Inline Map, out of Fetch's output; a plan of more than 40 chunks in the Distributed Map.

Both run the real ASL on moto's Step Functions interpreter with the handlers in-process and end with the same
snapshot: every non-zero block of the disk, byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from diskport.engine import BLOCK_SIZE
from diskport.pipeline.chunk_plan import INLINE_MAP_MAX_CHUNKS
from diskport.settings import get_settings

from tests.support.executions import entered_states


def dense_disk(blocks: int) -> bytes:
    """A raw disk whose every block holds data of its own."""
    return b"".join(bytes([index % 251 + 1]) * BLOCK_SIZE for index in range(blocks))


@pytest.fixture
def one_block_chunks(importer: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CHUNK_BYTES", str(BLOCK_SIZE))
    get_settings.cache_clear()
    return importer


# One worker beside Fetch: the Inline Map runs the five chunks it leaves.
@pytest.mark.parametrize("stack_parameters", [{"WorkersBesideFetch": "1"}])
def test_a_plan_of_a_few_chunks_runs_in_the_inline_map(
    one_block_chunks: Any, oracle_blocks: Any, tmp_path: Any
) -> None:
    # Given a disk of 6 blocks of data, cut into chunks of one block
    disk = tmp_path / "six.raw"
    disk.write_bytes(dense_disk(6))
    work_file_puts = one_block_chunks.watch_calls("s3", "PutObject")

    # When it is imported
    job = one_block_chunks.import_file(disk, "disks/six.raw")

    # Then the worker beside Fetch took the first chunk, the Inline Map the others, never the Distributed one, and
    # the snapshot holds the disk
    assert job["status"] == "SUCCESS", job
    states = entered_states(one_block_chunks, job["job_id"])
    assert states.count("ConvertFirstChunk") == 1
    assert states.count("ConvertChunk") == 5
    assert "Convert" in states
    assert "ConvertDistributed" not in states
    image = one_block_chunks.image(job["entities"]["image_id"])
    assert one_block_chunks.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(disk)
    # And Fetch wrote no plan to S3 (the round trip would buy nothing): its answer carried the chunks
    assert [put for put in work_file_puts if "plan.json" in put["url_path"]] == []
    assert [put for put in work_file_puts if "manifest.json" in put["url_path"]] != []


def test_a_plan_of_more_chunks_than_the_inline_map_runs_in_the_distributed_map(
    one_block_chunks: Any, oracle_blocks: Any, tmp_path: Any
) -> None:
    # Given a disk with one block of data more than the Inline Map takes chunks
    blocks = INLINE_MAP_MAX_CHUNKS + 1
    disk = tmp_path / "many.raw"
    disk.write_bytes(dense_disk(blocks))
    work_file_puts = one_block_chunks.watch_calls("s3", "PutObject")

    # When it is imported
    job = one_block_chunks.import_file(disk, "disks/many.raw")

    # Then the Distributed Map read the plan from S3 and ran its chunks, and the snapshot holds the disk
    assert job["status"] == "SUCCESS", job
    states = entered_states(one_block_chunks, job["job_id"])
    assert "ConvertDistributed" in states
    assert "Convert" not in states
    assert [put for put in work_file_puts if "plan.json" in put["url_path"]] != []
    image = one_block_chunks.image(job["entities"]["image_id"])
    assert one_block_chunks.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(disk)
    assert one_block_chunks.work_files() == []
