"""The template's functions as Lambda runs them: each instance its own process, several at once.

An invocation takes an idle instance of its function or, below the function's concurrency, starts one
(a cold start: a fork server, `forkserver.py`, forks a process that imports the handler with the function's own
environment); an instance idle for `idle_seconds` is stopped, as Lambda ends idle environments; beyond it, the
invocation waits for an instance to come free, as a throttled synchronous call would be retried. An
instance runs one event at a time, so module globals (the Powertools resolver's current event, the
logger's keys) are per instance as on Lambda. An instance whose handler overruns the function's Timeout is
killed and the call answers `Sandbox.Timedout`; one that dies answers `Runtime.ExitError`.

`install()` makes moto's Lambda (and so the Step Functions interpreter) call these instances instead of
starting Docker containers; the HTTP front and the pollers call `invoke()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diskport_emulator.lambda_runtime.forkserver import PRELOAD_VARIABLE, send_with_descriptor, startup_variables
from diskport_emulator.lambda_runtime.functions import TemplateFunctions
from diskport_emulator.lambda_runtime.instance import receive_message, send_message
from diskport_emulator.template import LocalStack

CONCURRENCY_VARIABLE = "DISKPORT_FUNCTION_CONCURRENCY"


def default_concurrency() -> int:
    """Instances per function: enough for a Map to run chunks in parallel, bounded by the machine."""
    return max(4, min(16, 2 * (os.cpu_count() or 2)))


def concurrency_from_environment(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get(CONCURRENCY_VARIABLE, "").strip()
    return max(1, int(text)) if text else default_concurrency()


IDLE_SECONDS_VARIABLE = "DISKPORT_FUNCTION_IDLE_SECONDS"
# Lambda keeps an idle execution environment for minutes; a forked instance starts in about a tenth of a second
# (once its fork server runs), so local mode lets one go sooner: the steps an import has finished with (CreateImageJob,
# MarkRunning, Fetch) free their memory while its chunks convert, and a client polling GetJob every second or two
# keeps its instance.
DEFAULT_IDLE_SECONDS = 5.0


def idle_seconds_from_environment(environ: Mapping[str, str] = os.environ) -> float:
    text = environ.get(IDLE_SECONDS_VARIABLE, "").strip()
    return max(0.0, float(text)) if text else DEFAULT_IDLE_SECONDS


class FunctionStartError(RuntimeError):
    """An instance could not load its handler."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("errorMessage", "the handler could not be loaded"))
        self.error = error


class ForkServer:
    """Local mode's end of a fork server (`forkserver.py`): it forks instances, and kills one that overruns."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "diskport_emulator.lambda_runtime.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            # A process group of its own: the terminal's Ctrl-C is local mode's to handle (it waits for the imports
            # under way), not a signal that ends every instance at once. The instances end when local mode does.
            process_group=0,
        )
        theirs.close()
        self._control = ours
        self._lock = threading.Lock()
        ready = receive_message(ours)
        if ready is None or not ready.get("ready"):
            self.stop()
            raise FunctionStartError({"errorMessage": "the fork server of the function instances did not start"})

    def fork(self, environment: Mapping[str, str], name: str) -> tuple[socket.socket, int]:
        """A new instance with this environment: local mode's end of its socket, and its pid."""
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                send_with_descriptor(self._control, {"environment": dict(environment), "name": name}, theirs.fileno())
                answer = receive_message(self._control)
        except OSError as error:  # the fork server has gone (local mode is stopping)
            ours.close()
            raise FunctionStartError({"errorMessage": f"{name} could not be started: {error}"}) from error
        finally:
            theirs.close()
        if answer is None or "pid" not in answer:
            ours.close()
            raise FunctionStartError({"errorMessage": f"{name} could not be started: {answer}"})
        return ours, int(answer["pid"])

    def kill(self, pid: int) -> None:
        """SIGKILL the instance, unless it has ended already."""
        with self._lock, contextlib.suppress(OSError):
            send_message(self._control, {"kill": pid})
            receive_message(self._control)

    def stop(self, wait: bool = True) -> None:
        """Close the control socket: the fork server ends once its instances have (waited for, unless `wait` is off)."""
        self._control.close()
        if not wait:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class _Instance:
    connection: socket.socket
    pid: int
    server: ForkServer
    returncode: int | None = None
    idle_since: float = 0.0

    def ended(self, answer: dict[str, Any]) -> bool:
        """Whether the message read is the instance's end: its exit status, from the fork server."""
        if "exited" not in answer:
            return False
        self.returncode = int(answer["exited"])
        return True

    def kill(self) -> None:
        self.server.kill(self.pid)

    def stop(self) -> None:
        """Let the instance go and wait for it to end (killed if it has not within 5 s)."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)  # the instance reads the end of its invocations and exits
        for wait in (5.0, 5.0):
            if self._wait_for_end(wait):
                break
            self.kill()
        self.connection.close()

    def _wait_for_end(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            if not readable:
                return False
            try:
                answer = receive_message(self.connection)
            except OSError:
                return True
            if answer is None or self.ended(answer):
                return True
        return False


@dataclass
class _Pool:
    idle: list[_Instance] = field(default_factory=list)
    running: int = 0
    free: threading.Condition = field(default_factory=threading.Condition)


class FunctionInstances(TemplateFunctions):
    """The template's functions, callable by name or ARN, each invocation in an instance process of its own."""

    def __init__(
        self,
        stack: LocalStack,
        overrides: Mapping[str, str] | None = None,
        concurrency: int | None = None,
        idle_seconds: float | None = None,
        base_environment: Callable[[], Mapping[str, str]] = lambda: os.environ,
        function_overrides: Mapping[str, Mapping[str, str]] | None = None,
        preloaded_modules: Sequence[str] = (),
    ) -> None:
        super().__init__(stack)
        # The functions' own modules the fork servers import once for every instance (`forkserver.PRELOAD_VARIABLE`).
        self._preloaded_modules = tuple(preloaded_modules)
        self._overrides = dict(overrides or {})
        # Per function, set last: the credentials of the function's own role when IAM is enforced.
        self._function_overrides = {name: dict(values) for name, values in (function_overrides or {}).items()}
        self.concurrency = concurrency or concurrency_from_environment()
        # An instance idle this long is stopped, as Lambda ends an execution environment it has not used for a while.
        self.idle_seconds = idle_seconds if idle_seconds is not None else idle_seconds_from_environment()
        self._reaper: threading.Thread | None = None
        self._reaper_stopping = threading.Event()
        self._base_environment = base_environment
        self._pools = {logical_id: _Pool() for logical_id in self.logical_ids}
        self._shared_keys = {name for logical_id in self.logical_ids for name in stack.function_environment(logical_id)}
        self._stopped = False
        self._servers: dict[tuple[tuple[str, str], ...], ForkServer] = {}
        self._servers_lock = threading.Lock()

    def environment(self, logical_id: str) -> dict[str, str]:
        """What an instance of the function sees: this process's environment, the function's own, local mode's.

        Variables that only other functions declare are left out, so each function has its own environment;
        local mode's overrides (the emulator's endpoint, credentials, project) come last.
        """
        own = self.stack.function_environment(logical_id)
        base = {name: value for name, value in self._base_environment().items() if name not in self._shared_keys}
        return {
            **base,
            # Lambda's Python runtime has boto3 without the AWS Common Runtime, and the layer ships none: botocore
            # signs in Python there. Where this machine has awscrt, botocore would sign with it instead, reading
            # every request body through a Python callback (a quarter of a convert worker's CPU time).
            "BOTO_DISABLE_CRT": "true",
            **own,
            **self._overrides,
            **self._function_overrides.get(logical_id, {}),
            "AWS_LAMBDA_FUNCTION_NAME": self.stack.physical_name(logical_id),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory(logical_id)),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "PYTHONUNBUFFERED": "1",
            # Powertools warns on every invocation that it has no metrics, which local mode does not publish.
            "PYTHONWARNINGS": "ignore:No application metrics to publish",
        }

    def _start_instance(self, logical_id: str) -> _Instance:
        path, handler = self.handler_location(logical_id)
        environment = self.environment(logical_id)
        server = self._fork_server(environment)
        connection, pid = server.fork(environment, logical_id.removesuffix("Function"))
        instance = _Instance(connection, pid, server)
        setup = {"path": str(path), "module_name": f"diskport_functions.{logical_id}", "handler": handler}
        send_message(connection, setup)
        answer = receive_message(connection)
        if answer is None or not answer.get("ready"):
            error = (answer or {}).get("error") or {"errorMessage": f"{logical_id} did not start"}
            instance.stop()
            raise FunctionStartError(error)
        return instance

    def _fork_server(self, environment: Mapping[str, str]) -> ForkServer:
        """The fork server for instances with these start-up variables, started on first use."""
        startup = startup_variables(environment)
        key = tuple(sorted(startup.items()))
        with self._servers_lock:
            if self._stopped:
                raise FunctionStartError({"errorMessage": "local mode is stopping"})
            if key not in self._servers:
                preload = {PRELOAD_VARIABLE: ",".join(self._preloaded_modules)} if self._preloaded_modules else {}
                self._servers[key] = ForkServer({**self.shared_environment(), **startup, **preload})
            return self._servers[key]

    def shared_environment(self) -> dict[str, str]:
        """The variables every function's instances see with the same value: all a fork server runs with."""
        environments = [self.environment(logical_id) for logical_id in self.logical_ids]
        shared = dict(environments[0]) if environments else {}
        for environment in environments[1:]:
            shared = {name: value for name, value in shared.items() if environment.get(name) == value}
        return shared

    def _acquire(self, logical_id: str) -> _Instance:
        pool = self._pools[logical_id]
        with pool.free:
            while not pool.idle and pool.running >= self.concurrency:
                pool.free.wait()
            pool.running += 1
            if pool.idle:
                return pool.idle.pop()
        try:
            return self._start_instance(logical_id)
        except BaseException:
            self._release(logical_id, None)
            raise

    def _release(self, logical_id: str, instance: _Instance | None) -> None:
        pool = self._pools[logical_id]
        with pool.free:
            pool.running -= 1
            if instance is not None:
                if self._stopped:
                    instance.stop()
                else:
                    instance.idle_since = time.monotonic()
                    pool.idle.append(instance)
                    self._start_reaper()
            pool.free.notify()

    def _start_reaper(self) -> None:
        with self._servers_lock:
            if self._reaper is None and not self._stopped:
                self._reaper = threading.Thread(target=self._reap_idle, name="idle instances", daemon=True)
                self._reaper.start()

    def _reap_idle(self) -> None:
        """Stop the instances idle for `idle_seconds`, until the runtime stops."""
        while not self._reaper_stopping.wait(min(1.0, max(0.05, self.idle_seconds / 4))):
            for pool in self._pools.values():
                cutoff = time.monotonic() - self.idle_seconds
                with pool.free:
                    expired = [instance for instance in pool.idle if instance.idle_since <= cutoff]
                    pool.idle = [instance for instance in pool.idle if instance.idle_since > cutoff]
                for instance in expired:
                    instance.stop()

    def invoke(self, function_name_or_arn: str, event: Any) -> tuple[str, bool]:
        """Call the function; answer (JSON payload, whether it is a function error)."""
        logical_id = self.logical_id(function_name_or_arn)
        try:
            instance = self._acquire(logical_id)
        except FunctionStartError as error:
            return json.dumps({**error.error, "errorType": "Runtime.ImportModuleError"}), True
        kept: list[_Instance] = []
        try:
            with self.recorded(logical_id):
                return self._run(logical_id, instance, event, kept)
        finally:
            self._release(logical_id, kept[0] if kept else None)

    def _run(self, logical_id: str, instance: _Instance, event: Any, kept: list[_Instance]) -> tuple[str, bool]:
        """One invocation in the instance (or a fresh one, if it has gone); `kept` gets the instance still usable."""
        request_id = str(uuid.uuid4())
        timeout = self.timeout(logical_id)
        context = {**self.context_fields(logical_id), "aws_request_id": request_id}
        try:
            send_message(instance.connection, {"event": event, "context": context})
        except OSError:  # an idle instance that has gone: Lambda would start a fresh one
            instance.stop()
            instance = self._start_instance(logical_id)
            send_message(instance.connection, {"event": event, "context": context})
        readable, _, _ = select.select([instance.connection], [], [], timeout)
        if not readable:
            instance.kill()
            instance.stop()
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}), True
        answer = receive_message(instance.connection)
        if answer is None or instance.ended(answer):
            instance.stop()
            message = f"RequestId: {request_id} Error: Runtime exited with status {instance.returncode}"
            return json.dumps({"errorMessage": message, "errorType": "Runtime.ExitError"}), True
        kept.append(instance)
        return str(answer["payload"]), bool(answer["errored"])

    def warm_up(self, function_name_or_arn: str, instances: int = 1) -> None:
        """Start instances of the function now (at most its concurrency), as provisioned concurrency would."""
        logical_id = self.logical_id(function_name_or_arn)
        started: list[_Instance] = []
        lock = threading.Lock()

        def start_one() -> None:
            instance = self._acquire(logical_id)
            with lock:
                started.append(instance)

        threads = [threading.Thread(target=start_one) for _ in range(min(instances, self.concurrency))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for instance in started:
            self._release(logical_id, instance)

    def stop(self) -> None:
        """Stop every idle instance, then the fork servers; busy instances stop when their invocation ends."""
        self._stopped = True
        self._reaper_stopping.set()
        for pool in self._pools.values():
            with pool.free:
                idle, pool.idle = pool.idle, []
            for instance in idle:
                instance.stop()
        busy = any(pool.running for pool in self._pools.values())
        with self._servers_lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop(wait=not busy)
