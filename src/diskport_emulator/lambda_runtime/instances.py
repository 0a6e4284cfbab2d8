"""The template's functions as Lambda runs them: each instance its own process, several at once.

An invocation takes an idle instance of its function or, below the function's concurrency, starts one
(a cold start: a new process imports the handler with the function's own environment); beyond it, the
invocation waits for an instance to come free, as a throttled synchronous call would be retried. An
instance runs one event at a time, so module globals (the Powertools resolver's current event, the
logger's keys) are per instance as on Lambda. An instance whose handler overruns the function's Timeout is
killed and the call answers `Sandbox.Timedout`; one that dies answers `Runtime.ExitError`.

`install()` makes moto's Lambda (and so the Step Functions interpreter) call these instances instead of
starting Docker containers; the HTTP front and the pollers call `invoke()`.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


class FunctionStartError(RuntimeError):
    """An instance could not load its handler."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("errorMessage", "the handler could not be loaded"))
        self.error = error


@dataclass
class _Instance:
    process: subprocess.Popen[bytes]
    connection: socket.socket

    def stop(self) -> None:
        self.connection.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
        base_environment: Callable[[], Mapping[str, str]] = lambda: os.environ,
        function_overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(stack)
        self._overrides = dict(overrides or {})
        # Per function, set last: the credentials of the function's own role when IAM is enforced.
        self._function_overrides = {name: dict(values) for name, values in (function_overrides or {}).items()}
        self.concurrency = concurrency or concurrency_from_environment()
        self._base_environment = base_environment
        self._pools = {logical_id: _Pool() for logical_id in self.logical_ids}
        self._shared_keys = {name for logical_id in self.logical_ids for name in stack.function_environment(logical_id)}
        self._stopped = False

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
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(
            [sys.executable, "-m", "diskport_emulator.lambda_runtime.instance", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=self.environment(logical_id),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        instance = _Instance(process, ours)
        setup = {"path": str(path), "module_name": f"diskport_functions.{logical_id}", "handler": handler}
        send_message(ours, setup)
        answer = receive_message(ours)
        if answer is None or not answer.get("ready"):
            instance.stop()
            raise FunctionStartError((answer or {}).get("error") or {"errorMessage": f"{logical_id} did not start"})
        return instance

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
                    pool.idle.append(instance)
            pool.free.notify()

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
            instance.process.kill()
            instance.stop()
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}), True
        answer = receive_message(instance.connection)
        if answer is None:
            instance.stop()
            message = f"RequestId: {request_id} Error: Runtime exited with status {instance.process.returncode}"
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
        """Stop every idle instance; busy ones stop when their invocation ends."""
        self._stopped = True
        for pool in self._pools.values():
            with pool.free:
                idle, pool.idle = pool.idle, []
            for instance in idle:
                instance.stop()
