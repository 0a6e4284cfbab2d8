"""The engine reuses its block buffers instead of faulting fresh pages in for every job."""

from __future__ import annotations

import platform
import random
import resource
from pathlib import Path

import pytest
from diskport.engine import LocalFileSource, open_disk
from diskport.engine.memory import keep_freed_buffers

PAGE_SIZE = resource.getpagesize()
IMAGE_SIZE = 64 * 1024 * 1024

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)


@glibc_only
def test_malloc_thresholds_are_set_on_glibc() -> None:
    assert keep_freed_buffers() is True


@glibc_only
def test_repeated_passes_over_a_dense_disk_reuse_memory(tmp_path: Path) -> None:
    # Given a 64 MiB raw disk where every block holds data
    image = tmp_path / "dense.raw"
    image.write_bytes(random.Random(1).randbytes(IMAGE_SIZE))
    # When every block is read and hashed, several times over
    faults = []
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with LocalFileSource(image) as source, open_disk(source) as disk:
            for _block in disk.iter_blocks(0, disk.virtual_size):
                pass
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # Then, once warm, a pass faults in far fewer pages than it reads (glibc's defaults fault in about a third)
    assert min(faults[1:]) < IMAGE_SIZE // PAGE_SIZE // 8, faults
