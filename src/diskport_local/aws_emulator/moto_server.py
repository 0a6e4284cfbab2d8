"""moto's HTTP server, made to give back each request's memory once answered, and to find a request's service fast.

Two things kept the memory instead, so that uploading a 1 GiB image in 8 MiB parts left the emulator ~600 MiB larger
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

And moto's dispatcher looks each request's service up, under one lock for the whole server, by listing moto's
package folder (a directory listing and a `stat` for each of its ~200 services) and then matching the host
against every service's URL patterns, twice per request: a seventh of the server's CPU time in a local import.
The answer depends only on the host (the signed service's name), so it is remembered per host.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from typing import Any

_M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def install() -> None:
    """Free moto's server requests once answered and large buffers when freed; remember each host's service
    (idempotent)."""
    from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication
    from werkzeug.wrappers import Request as WerkzeugRequest

    load_form_data: Any = WerkzeugRequest._load_form_data
    BackendRequest._load_form_data = load_form_data  # type: ignore[method-assign]
    return_large_buffers()
    if not getattr(DomainDispatcherApplication.get_backend_for_host, "remembers_hosts", False):
        look_up = DomainDispatcherApplication.get_backend_for_host

        def get_backend_for_host(dispatcher: Any, host: str | None) -> Any:
            known: dict[str | None, Any] = dispatcher.__dict__.setdefault("_diskport_backend_of_host", {})
            if host not in known:
                known[host] = look_up(dispatcher, host)  # the dispatcher calls this under its own lock
            return known[host]

        get_backend_for_host.remembers_hosts = True  # type: ignore[attr-defined]
        DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign,assignment]


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
