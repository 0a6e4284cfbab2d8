"""A job created through the API really imports the file: INIT → RUNNING → SUCCESS with an image, bytes intact.

Each test runs the real ASL on moto's Step Functions interpreter with the handlers in-process, then reads the
snapshot back block by block and compares it with `qemu-img convert -O raw` of the same file.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("disk_format", ["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi"])
def test_an_imported_file_becomes_a_snapshot_holding_exactly_its_non_zero_blocks(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any, disk_format: str
) -> None:
    # Given an image file in the watched bucket
    image_file = image_files[disk_format]

    # When a client imports it and the import runs to its end
    job = importer.import_file(image_file.path, f"disks/data1.{disk_format}")

    # Then the job succeeded and names its image
    assert job["status"] == "SUCCESS", job
    assert job["entities"]["image_name"] == "data-disk-1"
    assert job["entities"]["process_percent"] == 100
    assert job["end_time"] is not None
    image = importer.image(job["entities"]["image_id"])
    assert image["status"] == "active"
    assert image["source_format"] == disk_format

    # And the snapshot holds every non-zero block of the disk, byte for byte, and no all-zero block
    assert importer.snapshot_blocks(image["snapshot_id"]) == oracle_blocks(image_file.oracle)
    # And the import's temporary files are gone
    assert importer.work_files() == []
