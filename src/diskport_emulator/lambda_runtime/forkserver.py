"""A fork server: one process with the SDKs loaded that forks every function instance, so they share that memory.

Each instance used to be a Python process of its own that imported boto3, botocore's data, pydantic and Powertools
again (~100 MiB each, a dozen of them during an import). The fork server imports those once, reads the SDK data
the functions' clients use, freezes what it holds out of the garbage collector's reach (`gc.freeze()`, so a
collection in an instance does not write to the shared pages) and then, for each instance asked for, forks: the
instance starts with the memory of the fork server shared, copy on write.

What a fork cannot change is read before the handler loads: what Python and glibc read when a process starts
(`PYTHON*`, `GLIBC_TUNABLES`, `MALLOC_*`, `LD_*`) and what the preloaded modules read on import. So the fork server
runs with only the variables every function shares, plus the start-up variables of the functions it forks
(`FunctionInstances` runs one fork server for each set of start-up variables: one for Fetch and Convert with their
malloc tunables, one for the rest); the preloaded modules read none of a function's own variables on import
(`tests/unit/emulator/test_fork_server.py` checks it): third-party ones, and those of the functions' own modules
whoever runs the emulator names (`Serving.preloaded_modules`: for diskport, its data models, settings model and
disk engine); the rest, the Powertools logger, tracer and metrics first, are left for each instance to import
with its own environment, as before. An instance replaces its environment with its
function's before it loads the handler.

The fork server is single-threaded, so a fork copies no lock held by another thread. It talks to local mode over
a control socket: a request to fork carries the instance's socket (SCM_RIGHTS), its environment and its name, and
is answered with the instance's pid; a request to kill one (an invocation that overran its timeout) is answered
once it is sent SIGKILL. The fork server keeps its own copy of each instance's socket, so that when the instance
ends, however it ends, local mode reads its exit status there (`{"exited": status}`, as `Popen.returncode`) and
then the end of the connection. When local mode ends, the control socket closes: the fork server waits for its
instances to end (those idle end at once), and ends at once if local mode's process has gone; each instance ends
when the fork server has (`instance.stop_with_parent`), even in the middle of an invocation.

    python -m diskport_emulator.lambda_runtime.forkserver CONTROL_FD
"""

from __future__ import annotations

import array
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from diskport_emulator.lambda_runtime.instance import (
    HEADER,
    send_message,
    serve,
    share_sdk_data,
    stop_with_parent,
)

# What Lambda functions in Python commonly import, none of which reads a function's own variables on import.
PRELOADED_MODULES = (
    "boto3",
    "boto3.dynamodb.conditions",
    "botocore.client",
    "botocore.config",
    "botocore.exceptions",
    "botocore.session",
    "cryptography.hazmat.primitives.ciphers.aead",
    "pydantic",
    "pydantic_core",
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.params",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.data_classes.sqs_event",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.idempotency.serialization.pydantic",
    "aws_lambda_powertools.utilities.parser.models",
    "aws_lambda_powertools.utilities.typing",
)
# The functions' own modules to import once as well, comma-separated in the fork server's environment: named by
# whoever runs the emulator (`Serving.preloaded_modules`), which knows which of its modules read nothing of a
# function's environment on import.
PRELOAD_VARIABLE = "DISKPORT_EMULATOR_PRELOAD"
# The services whose models the functions' clients load (diskport.stores), read once here for every instance.
PRELOADED_SERVICE_MODELS = ("dynamodb", "ebs", "kms", "s3", "stepfunctions")
PRELOADED_SDK_DATA = ("endpoints", "partitions", "sdk-default-configuration", "_retry")
# Read by Python, the dynamic loader or glibc when a process starts: a forked process keeps its parent's.
STARTUP_VARIABLE_PREFIXES = ("PYTHON", "_PYTHON", "LD_", "MALLOC_", "GLIBC_TUNABLES")


def startup_variables(environment: Mapping[str, str]) -> dict[str, str]:
    """The variables of an environment that only a process's start reads."""
    return {name: value for name, value in environment.items() if name.startswith(STARTUP_VARIABLE_PREFIXES)}


def preload(own_modules: Sequence[str] = ()) -> None:
    """Import what the handlers share (`PRELOADED_MODULES` and `own_modules`) and read the SDK data their clients
    use, then keep it from the collector."""
    for name in (*PRELOADED_MODULES, *own_modules):
        importlib.import_module(name)
    share_sdk_data()
    import botocore.session

    loader = botocore.session.create_loader(None)  # the one every session of an instance gets (share_sdk_data)
    for name in PRELOADED_SDK_DATA:
        loader.load_data(name)
    for service in PRELOADED_SERVICE_MODELS:
        loader.load_service_model(service, "service-2")
        loader.load_service_model(service, "endpoint-rule-set-1")
    gc.collect()
    gc.freeze()


def send_with_descriptor(connection: socket.socket, message: dict[str, Any], descriptor: int) -> None:
    body = json.dumps(message).encode("utf-8")
    data = HEADER.pack(len(body)) + body
    sent = connection.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [descriptor]))])
    if sent < len(data):
        connection.sendall(data[sent:])


def receive_with_descriptor(connection: socket.socket) -> tuple[dict[str, Any], int | None] | None:
    """The next message and the descriptor sent with it, or None when the other end has gone."""
    data, descriptors, _, _ = socket.recv_fds(connection, HEADER.size, 1)
    if not data:
        return None
    while len(data) < HEADER.size:
        more = connection.recv(HEADER.size - len(data))
        if not more:
            return None
        data += more
    body = b""
    remaining = HEADER.unpack(data)[0]
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        body += chunk
        remaining -= len(chunk)
    message: dict[str, Any] = json.loads(body)
    return message, (descriptors[0] if descriptors else None)


class _ForkServer:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.parent = os.getppid()
        self.instances: dict[int, socket.socket] = {}  # pid -> this process's copy of the instance's socket
        self.wake_reader, self.wake_writer = os.pipe()
        os.set_blocking(self.wake_reader, False)
        os.set_blocking(self.wake_writer, False)

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_writer)
        signal.signal(signal.SIGCHLD, lambda _signal, _frame: None)
        send_message(self.control, {"ready": True, "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.control.fileno(), self.wake_reader], [], [])
            if self.wake_reader in readable:
                with suppress(BlockingIOError):
                    os.read(self.wake_reader, 4096)
            self.reap()
            if self.control.fileno() in readable:
                request = receive_with_descriptor(self.control)
                if request is None:
                    break
                self.answer(*request)
        self.control.close()
        while self.instances and os.getppid() == self.parent:  # local mode stops: let the busy instances finish
            time.sleep(0.2)
            self.reap()

    def answer(self, request: dict[str, Any], descriptor: int | None) -> None:
        if "kill" in request:
            pid = int(request["kill"])
            if pid in self.instances:  # not reaped yet, so the pid is still that instance's
                os.kill(pid, signal.SIGKILL)
            send_message(self.control, {"killed": pid})
            return
        if descriptor is None:
            send_message(self.control, {"error": "no socket came with the request"})
            return
        connection = socket.socket(fileno=descriptor)
        try:
            pid = os.fork()
        except OSError as error:  # out of memory or processes: this instance cannot start, others may later
            connection.close()
            send_message(self.control, {"error": f"fork failed: {error}"})
            return
        if pid == 0:
            self.become_instance(connection, request["environment"], str(request["name"]))
        self.instances[pid] = connection
        send_message(self.control, {"pid": pid})

    def become_instance(self, connection: socket.socket, environment: dict[str, str], name: str) -> None:
        """In the forked process: the instance, with its function's environment, until local mode lets it go."""
        status = 0
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for descriptor in (self.wake_reader, self.wake_writer):
                os.close(descriptor)
            self.control.close()
            for other in self.instances.values():
                other.close()
            os.environ.clear()
            os.environ.update(environment)
            with suppress(OSError):  # what `ps` and `top` show for the process (15 characters at most)
                Path("/proc/self/comm").write_text(name[:15])
            stop_with_parent()
            serve(connection)
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            with suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def reap(self) -> None:
        """Collect the instances that have ended and tell local mode, on each one's socket, how it ended."""
        while self.instances:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.instances.pop(pid, None)
            if connection is not None:
                with suppress(OSError):
                    send_message(connection, {"exited": os.waitstatus_to_exitcode(status)})
                connection.close()


def main(control_descriptor: int) -> None:
    control = socket.socket(fileno=control_descriptor)
    preload([name for name in os.environ.pop(PRELOAD_VARIABLE, "").split(",") if name])
    _ForkServer(control).run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
