"""glibc's malloc, told to keep freed block buffers for reuse rather than hand them back to the kernel.

The engine allocates and frees 512 KiB blocks (and 8 MiB S3 reads) all the time. glibc's defaults adapt its
thresholds to the largest block freed so far, and give the free top of a thread's heap back to the kernel once more
than about twice that is free: each job's 8 MiB of blocks then came back as fresh pages, tens of thousands of page
faults per GiB, about a fifth of the CPU time of a dense import on the reference machine (docs/engine.md). Fixed
thresholds keep that memory for the next job instead. The engine holds only a few jobs in flight, so what stays
allocated is bounded by that, not by the size of the image.
"""

from __future__ import annotations

import ctypes
import functools
import platform

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Below this size, allocations come from the heap and are reused; an 8 MiB S3 read and a 512 KiB block both are.
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
# Free memory at the top of a heap is kept up to this much: more than the engine's jobs in flight ever free at once.
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


@functools.cache
def keep_freed_buffers() -> bool:
    """Set the thresholds once per process; whether they were set (False where the C library is not glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either turns off glibc's adaptive thresholds, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
