"""Run the project's Lambda handlers in this process, in place of moto's Docker-based Lambda.

moto's Step Functions interpreter invokes Task states through moto's Lambda, which would start a
container per call. `InProcessLambdas.install()` replaces that one method so each invocation imports the
function's `app.py` (from the template's CodeUri and Handler) and calls it here, answering the way the
Lambda runtime does: the handler's result, or `errorMessage` / `errorType` / `stackTrace` flagged as a
function error.

This is the runtime of the in-process tests, where a test injects faults into the handlers' own clients;
local mode runs each function instance in a process of its own (`aws_emulator.function_instances`).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from diskport_emulator.lambda_runtime.instance import LambdaContextStandIn
from diskport_emulator.template import LocalStack

Handler = Callable[[dict[str, Any], Any], Any]


class InProcessLambdas:
    """The template's functions, callable by name or ARN in this process."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._logical_ids = {
            stack.physical_name(logical_id): logical_id
            for logical_id in stack.resources_of_type("AWS::Serverless::Function")
        }
        # One lock per function: like a single warm Lambda instance, a function handles one event at a
        # time, because handler modules keep per-request state in module globals (the Powertools resolver's
        # current_event, the logger's correlation id) that concurrent calls would mix up.
        self._instance_locks = {logical_id: threading.Lock() for logical_id in self._logical_ids.values()}

    def logical_id(self, function_name_or_arn: str) -> str:
        name = function_name_or_arn.split(":function:")[-1].split(":")[0]
        if name in self._logical_ids:
            return self._logical_ids[name]
        if name in self._logical_ids.values():
            return name
        raise KeyError(f"template.yaml declares no function named {name}")

    def handler(self, function_name_or_arn: str) -> Handler:
        logical_id = self.logical_id(function_name_or_arn)
        function_name = str(self.stack.function_property(logical_id, "Handler")).rpartition(".")[2]
        handler: Handler = getattr(self.module(logical_id), function_name)
        return handler

    def module(self, function_name_or_arn: str) -> ModuleType:
        """The function's handler module (`functions/<x>/app.py`), imported once."""
        logical_id = self.logical_id(function_name_or_arn)
        with self._lock:
            if logical_id not in self._modules:
                self._modules[logical_id] = self._load(logical_id)
            return self._modules[logical_id]

    def _load(self, logical_id: str) -> ModuleType:
        code_uri = self.stack.function_property(logical_id, "CodeUri")
        module_name = str(self.stack.function_property(logical_id, "Handler")).rpartition(".")[0]
        path = self.stack.template_path.parent / code_uri / f"{module_name.replace('.', '/')}.py"
        spec = importlib.util.spec_from_file_location(f"diskport_functions.{logical_id}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def context(self, function_name_or_arn: str) -> LambdaContextStandIn:
        logical_id = self.logical_id(function_name_or_arn)
        return LambdaContextStandIn(
            function_name=self.stack.physical_name(logical_id),
            memory_limit_in_mb=int(self.stack.function_property(logical_id, "MemorySize") or 128),
            invoked_function_arn=self.stack.arn(logical_id),
            timeout_seconds=int(self.stack.function_property(logical_id, "Timeout") or 3),
        )

    def invoke(self, function_name_or_arn: str, event: Any) -> tuple[str, bool]:
        """Call the function; answer (JSON payload, whether it is a function error)."""
        try:
            with self._instance_locks[self.logical_id(function_name_or_arn)]:
                result = self.handler(function_name_or_arn)(event, self.context(function_name_or_arn))
            return json.dumps(result), False
        except Exception as error:  # the Lambda runtime turns any escaping exception into this shape
            return json.dumps(error_payload(error)), True

    def moto_invoke(self) -> Callable[..., tuple[str, bool, str]]:
        """A stand-in for moto's `LambdaFunction._invoke_lambda` that calls these handlers."""
        # Looked up at each call, so a test that patches `invoke` after installing is heard.
        return moto_invoker(lambda name, event: self.invoke(name, event))

    def install(self) -> None:
        """Make moto's Lambda (and so the Step Functions interpreter) call these handlers in-process."""
        install_in_moto(lambda name, event: self.invoke(name, event))


Invoke = Callable[[str, Any], tuple[str, bool]]


def moto_invoker(invoke: Invoke) -> Callable[..., tuple[str, bool, str]]:
    """moto's `LambdaFunction._invoke_lambda`, answered by `invoke(function name, event)` (payload, function error)."""

    def invoke_function(function: Any, event: Any = None) -> tuple[str, bool, str]:
        payload, errored = invoke(function.function_name, event if event is not None else {})
        return payload, errored, ""

    return invoke_function


def install_in_moto(invoke: Invoke) -> None:
    """Make moto's Lambda (and so the Step Functions interpreter) call `invoke` instead of a container."""
    from moto.awslambda.models import LambdaFunction

    LambdaFunction._invoke_lambda = moto_invoker(invoke)  # type: ignore[method-assign]


def error_payload(error: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }
