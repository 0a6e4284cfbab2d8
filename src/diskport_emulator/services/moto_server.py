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

Last, werkzeug's development server closes the connection after every answer (it cannot tell where a request's
body ends), so each of an import's ~10,000 requests paid for a new TCP connection, a new server thread and a
10 ms wait for stray body bytes. The emulator's requests say where their bodies end (a Content-Length): such a
connection is kept open for the caller's next request, the unread rest of the body skipped exactly, with
TCP_NODELAY so that an answer's headers and body do not wait on each other; a chunked request still closes it.
Stopping the server closes the connections it kept open.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import selectors
import socket
import threading
import weakref
from types import SimpleNamespace
from typing import IO, Any

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
    keep_connections_open()
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


class _ExactBody:
    """A request's body as `wsgi.input`: at most its Content-Length read from the connection, the rest skippable."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(wanted) if wanted else b""
        self.remaining -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.readline(wanted) if wanted else b""
        self.remaining -= len(data)
        return data

    def skip_rest(self, most: int = 64 * 1024 * 1024) -> bool:
        """Read and drop what the application left unread; whether the whole body is now consumed."""
        while 0 < self.remaining <= most and self.read(min(self.remaining, 1024 * 1024)):
            pass
        return self.remaining == 0


class _Current(threading.local):
    """The request a server thread is answering, when its connection is to stay open after it."""

    handler: Any = None
    body: _ExactBody | None = None


_CURRENT = _Current()
_OPEN_CONNECTIONS: weakref.WeakKeyDictionary[Any, set[socket.socket]] = weakref.WeakKeyDictionary()
_OPEN_LOCK = threading.Lock()


class _NoStrayBytes:
    """werkzeug's drain of stray body bytes: for a connection kept open, skip exactly the rest of the body."""

    def __init__(self) -> None:
        self._selector = None if _CURRENT.body is not None else selectors.DefaultSelector()

    def register(self, connection: Any, events: int) -> None:
        if self._selector is not None:
            self._selector.register(connection, events)

    def select(self, timeout: float | None = None) -> list[Any]:
        if self._selector is not None:
            return self._selector.select(timeout)
        body, handler = _CURRENT.body, _CURRENT.handler
        if body is not None and not body.skip_rest():
            handler.close_connection = True
        return []

    def close(self) -> None:
        if self._selector is not None:
            self._selector.close()


def keep_connections_open() -> None:
    """Let moto's server answer more than one request per connection (idempotent)."""
    import werkzeug.serving
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    if getattr(MotoRequestHandler, "keeps_connections_open", False):
        return
    # werkzeug.serving's own name for the module: its drain after each answer is the only use.
    werkzeug.serving.selectors = SimpleNamespace(  # type: ignore[assignment,attr-defined]
        DefaultSelector=_NoStrayBytes, EVENT_READ=selectors.EVENT_READ
    )
    setup, finish = MotoRequestHandler.setup, MotoRequestHandler.finish
    make_environ, send_header = MotoRequestHandler.make_environ, MotoRequestHandler.send_header

    def setup_connection(handler: Any) -> None:
        setup(handler)
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with _OPEN_LOCK:
            _OPEN_CONNECTIONS.setdefault(handler.server, set()).add(handler.connection)

    def finish_connection(handler: Any) -> None:
        with _OPEN_LOCK:
            _OPEN_CONNECTIONS.get(handler.server, set()).discard(handler.connection)
        _CURRENT.handler = _CURRENT.body = None
        finish(handler)

    def environ_of_request(handler: Any) -> dict[str, Any]:
        environ: dict[str, Any] = make_environ(handler)
        _CURRENT.handler, _CURRENT.body = handler, None
        length = str(environ.get("CONTENT_LENGTH") or "0")
        if "chunked" not in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() and length.isdigit():
            _CURRENT.body = environ["wsgi.input"] = _ExactBody(environ["wsgi.input"], int(length))
        return environ

    def header_unless_forced_close(handler: Any, keyword: str, value: str) -> None:
        forced_close = keyword.lower() == "connection" and value.lower() == "close"
        if forced_close and _CURRENT.body is not None and not handler.close_connection:
            return  # werkzeug's blanket close: this connection can carry the caller's next request
        send_header(handler, keyword, value)

    stop = ThreadedMotoServer.stop

    def stop_and_close_connections(server: Any) -> None:
        stop(server)
        with _OPEN_LOCK:
            connections = list(_OPEN_CONNECTIONS.pop(server._server, set()))
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    MotoRequestHandler.setup = setup_connection  # type: ignore[method-assign,assignment]
    MotoRequestHandler.finish = finish_connection  # type: ignore[method-assign,assignment]
    MotoRequestHandler.make_environ = environ_of_request  # type: ignore[method-assign,assignment]
    MotoRequestHandler.send_header = header_unless_forced_close  # type: ignore[method-assign,assignment]
    MotoRequestHandler.keeps_connections_open = True  # type: ignore[attr-defined]
    ThreadedMotoServer.stop = stop_and_close_connections  # type: ignore[method-assign,assignment]
