"""The emulator's server gives back the memory of each request once it has answered it.

Two things kept it instead, so that uploading a 1 GiB image in 8 MiB parts left the emulator ~600 MiB larger
than it started (and a 4 GiB one, with the import after it, over 900 MiB):

- moto runs its Flask apps in debug mode, where Flask gives each request's form data an ad-hoc class whose
  method closes over the request: a reference cycle, so the request and its body stayed in memory until the
  cycle collector's oldest generation ran, which counts objects, not bytes. moto's server requests now load
  their form data as werkzeug does, without that class (whose only use is a friendlier error message when a
  view reads a file field the request lacks).
- glibc's malloc raises its mmap threshold to the largest buffer freed so far: after the first 8 MiB part,
  request and response bodies came from the heaps of the server's many request threads, which keep what is
  freed in them. A fixed threshold of 1 MiB gives buffers of that size or more back to the kernel when they
  are freed; PutSnapshotBlock's 512 KiB blocks still come from, and return to, the heaps.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from typing import Any

_M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def install() -> None:
    """Free moto's server requests once answered, and large buffers when freed (idempotent)."""
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.wrappers import Request as WerkzeugRequest

    load_form_data: Any = WerkzeugRequest._load_form_data
    BackendRequest._load_form_data = load_form_data  # type: ignore[method-assign]
    return_large_buffers()


@functools.cache
def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold once per process; whether it was set (False where the C library is not glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
