"""What both function runtimes share: the template's functions by name or ARN, and the way into moto's Lambda.

`TemplateFunctions` answers, for a function named by its logical id, physical name or ARN, where its handler is,
its memory and timeout, the Lambda context an invocation gets, and keeps a record of when each invocation ran.
A runtime (`InProcessLambdas`, `FunctionInstances`) adds `invoke`; `install()` makes moto's Lambda, and so the
Step Functions interpreter, call it instead of starting a container.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diskport_emulator.template import LocalStack

# Calls a function by name or ARN with an event: (JSON payload, whether it is a function error), as Lambda answers.
Invoke = Callable[[str, Any], tuple[str, bool]]


@dataclass(frozen=True)
class Invocation:
    """When one invocation ran, for seeing how many ran at once."""

    function: str
    started: float
    ended: float


class TemplateFunctions:
    """The functions `template.yaml` declares, as a function runtime needs to know them."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._logical_ids = {
            stack.physical_name(logical_id): logical_id
            for logical_id in stack.resources_of_type("AWS::Serverless::Function")
        }
        self.invocations: list[Invocation] = []
        self._record_lock = threading.Lock()

    @property
    def logical_ids(self) -> list[str]:
        return list(self._logical_ids.values())

    def logical_id(self, function_name_or_arn: str) -> str:
        name = function_name_or_arn.split(":function:")[-1].split(":")[0]
        if name in self._logical_ids:
            return self._logical_ids[name]
        if name in self._logical_ids.values():
            return name
        raise KeyError(f"template.yaml declares no function named {name}")

    def handler_location(self, logical_id: str) -> tuple[Path, str]:
        """The function's handler file (from its CodeUri and Handler) and the name of the handler in it."""
        code_uri = self.stack.function_property(logical_id, "CodeUri")
        module_name, _, handler = str(self.stack.function_property(logical_id, "Handler")).rpartition(".")
        return self.stack.template_path.parent / code_uri / f"{module_name.replace('.', '/')}.py", handler

    def memory(self, logical_id: str) -> int:
        return int(self.stack.function_property(logical_id, "MemorySize") or 128)

    def timeout(self, logical_id: str) -> int:
        return int(self.stack.function_property(logical_id, "Timeout") or 3)

    def context_fields(self, logical_id: str) -> dict[str, Any]:
        """What the Lambda context of the function's invocations holds (besides the request id)."""
        return {
            "function_name": self.stack.physical_name(logical_id),
            "memory_limit_in_mb": self.memory(logical_id),
            "invoked_function_arn": self.stack.arn(logical_id),
            "timeout_seconds": self.timeout(logical_id),
        }

    @contextmanager
    def recorded(self, logical_id: str) -> Iterator[None]:
        """Note when the block (one invocation of the function) started and ended."""
        started = time.monotonic()
        try:
            yield
        finally:
            with self._record_lock:
                self.invocations.append(Invocation(logical_id, started, time.monotonic()))

    def invoke(self, function_name_or_arn: str, event: Any) -> tuple[str, bool]:
        """Call the function; answer (JSON payload, whether it is a function error)."""
        raise NotImplementedError

    def moto_invoke(self) -> Callable[..., tuple[str, bool, str]]:
        """A stand-in for moto's `LambdaFunction._invoke_lambda` that calls this runtime."""
        # Looked up at each call, so a test that patches `invoke` after installing is heard.
        return moto_invoker(lambda name, event: self.invoke(name, event))

    def install(self) -> None:
        """Make moto's Lambda (and so the Step Functions interpreter) call this runtime instead of a container."""
        from moto.awslambda.models import LambdaFunction

        LambdaFunction._invoke_lambda = self.moto_invoke()  # type: ignore[method-assign]


def moto_invoker(invoke: Invoke) -> Callable[..., tuple[str, bool, str]]:
    """moto's `LambdaFunction._invoke_lambda`, answered by `invoke(function name, event)` (payload, function error)."""

    def invoke_function(function: Any, event: Any = None) -> tuple[str, bool, str]:
        payload, errored = invoke(function.function_name, event if event is not None else {})
        return payload, errored, ""

    return invoke_function
