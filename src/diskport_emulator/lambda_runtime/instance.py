"""One function instance: a process that loads a handler once and runs one event at a time, as a Lambda sandbox.

Forked for `FunctionInstances` by a fork server (`forkserver.py`), which then gives it the function's own
environment. It reads the handler's location from the first message, then answers each
invocation with the handler's result or, when the handler raises, the Lambda runtime's error shape. The
handler's logs go to this process's stdout and stderr, which are local mode's.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import platform
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HEADER = struct.Struct("!Q")


def send_message(connection: socket.socket, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode("utf-8")
    connection.sendall(HEADER.pack(len(body)) + body)


def receive_message(connection: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other end has gone."""
    header = _receive_exactly(connection, HEADER.size)
    if header is None:
        return None
    body = _receive_exactly(connection, HEADER.unpack(header)[0])
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def _receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


@dataclass
class LambdaContextStandIn:
    """The parts of the Lambda context object that Powertools and the handlers read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        if not self.deadline:
            return self.timeout_seconds * 1000
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def error_payload(error: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def load_handler_module(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def share_sdk_data() -> None:
    """One botocore data loader for every session the handler makes, as within a single session.

    The layer makes a boto3 session per client (`diskport.aws`), and each session reads and parses the SDK's JSON
    data again (endpoints, partitions, retry rules, each service model): a quarter of a convert instance's CPU
    time in a local import. The loader is a read-only cache of those files, so sharing it changes no answer.
    """
    import botocore.session
    from botocore.loaders import create_loader

    if not hasattr(botocore.session.create_loader, "cache_info"):
        botocore.session.create_loader = functools.cache(create_loader)


def serve(connection: socket.socket) -> None:
    setup = receive_message(connection)
    if setup is None:
        return
    share_sdk_data()
    try:
        module = load_handler_module(Path(setup["path"]), setup["module_name"])
        handler = getattr(module, setup["handler"])
    except Exception as error:  # the instance cannot start: say why, as Lambda's Runtime.ImportModuleError does
        send_message(connection, {"ready": False, "error": error_payload(error)})
        return
    send_message(connection, {"ready": True})
    while (request := receive_message(connection)) is not None:
        context = LambdaContextStandIn(**request["context"])
        context.deadline = time.monotonic() + context.timeout_seconds
        try:
            answer = {"payload": json.dumps(handler(request["event"], context)), "errored": False}
        except Exception as error:  # the Lambda runtime turns any escaping exception into this shape
            answer = {"payload": json.dumps(error_payload(error)), "errored": True}
        sys.stdout.flush()
        send_message(connection, answer)
        give_back_free_memory()


def give_back_free_memory() -> None:
    """Between invocations, hand the free pages of the heap back to the system (glibc's `malloc_trim`).

    The malloc tunables of a function that reads disks keep freed buffers for reuse within an invocation; an idle
    instance has nothing to reuse them for, and in local mode it shares the machine with the instances at work.
    glibc releases the free pages inside its heaps and the top of the main one, not the free top of a thread's
    heap: what a thread freed last stays until the instance is reaped (`FunctionInstances.idle_seconds`).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    trim = ctypes.CDLL(None).malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def stop_with_parent(poll_seconds: float = 1.0) -> None:
    """End this instance when its parent (the fork server, which ends with local mode) ends, even mid-invocation."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
