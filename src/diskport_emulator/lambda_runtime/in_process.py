"""Run the project's Lambda handlers in this process, in place of moto's Docker-based Lambda.

moto's Step Functions interpreter invokes Task states through moto's Lambda, which would start a
container per call. `InProcessLambdas.install()` replaces that one method so each invocation calls the
function's handler (from the template's CodeUri and Handler) here, answering the way the Lambda runtime
does: the handler's result, or `errorMessage` / `errorType` / `stackTrace` flagged as a function error.

Invocations run as Lambda runs them, only in threads of this process: an invocation takes an idle instance
of its function or, when every instance is busy, loads a new one (a cold start), and gives it back when done.
An instance is the handler module loaded on its own, so its module globals (the Powertools resolver's
current event, a batch processor's records) belong to one invocation at a time, and any number of
invocations of one function run at once. With each function's credentials and a way to act on them
(`act_as`), an instance is loaded, and every invocation runs, as the function's own role.

This is the runtime of the in-process tests, where a test injects faults into the handlers' own clients;
local mode runs each function instance in a process of its own (`lambda_runtime.instances`). What one process
cannot keep apart, it shares: the modules the handlers import (the logger's keys, cached settings).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from diskport_emulator.lambda_runtime.functions import TemplateFunctions
from diskport_emulator.lambda_runtime.instance import LambdaContextStandIn, error_payload
from diskport_emulator.template import LocalStack

Handler = Callable[[dict[str, Any], Any], Any]
# How this process's code takes up credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, as a
# function instance's environment holds them) for the AWS calls made inside the block.
ActAs = Callable[[Mapping[str, str]], AbstractContextManager[object]]


class InProcessLambdas(TemplateFunctions):
    """The template's functions, callable by name or ARN in this process, each invocation in an instance of its own."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        act_as: ActAs | None = None,
    ) -> None:
        super().__init__(stack)
        # By logical id: the variables of the function's role credentials (`iam.function_credentials`).
        self._credentials = {logical_id: dict(variables) for logical_id, variables in (credentials or {}).items()}
        self._act_as = act_as
        self._idle: dict[str, list[ModuleType]] = {logical_id: [] for logical_id in self.logical_ids}
        self._idle_lock = threading.Lock()

    @contextlib.contextmanager
    def acting_as(self, function_name_or_arn: str) -> Iterator[None]:
        """AWS calls made in the block use the function's credentials (when it has any of its own)."""
        variables = self._credentials.get(self.logical_id(function_name_or_arn))
        if variables is None or self._act_as is None:
            yield
            return
        with self._act_as(variables):
            yield

    @contextlib.contextmanager
    def _instance(self, logical_id: str) -> Iterator[ModuleType]:
        """An idle instance of the function, or a new one; idle again once the block ends."""
        with self._idle_lock:
            module = self._idle[logical_id].pop() if self._idle[logical_id] else None
        if module is None:
            module = self._load(logical_id)
        try:
            yield module
        finally:
            with self._idle_lock:
                self._idle[logical_id].append(module)

    def _load(self, logical_id: str) -> ModuleType:
        path, _ = self.handler_location(logical_id)
        spec = importlib.util.spec_from_file_location(f"diskport_functions.{logical_id}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def module(self, function_name_or_arn: str) -> ModuleType:
        """The handler module of an instance of the function, for reading what it declares (its resolver's routes)."""
        logical_id = self.logical_id(function_name_or_arn)
        with self.acting_as(logical_id), self._instance(logical_id) as module:
            return module

    def handler(self, function_name_or_arn: str) -> Handler:
        """The function's handler as a caller in this process calls it: in an instance, as the function's role.

        Its exceptions reach the caller; `invoke` answers them as the Lambda runtime does.
        """
        logical_id = self.logical_id(function_name_or_arn)
        _, handler_name = self.handler_location(logical_id)

        def run(event: dict[str, Any], context: Any) -> Any:
            with self.acting_as(logical_id), self._instance(logical_id) as module, self.recorded(logical_id):
                return getattr(module, handler_name)(event, context)

        return run

    def context(self, function_name_or_arn: str) -> LambdaContextStandIn:
        return LambdaContextStandIn(**self.context_fields(self.logical_id(function_name_or_arn)))

    def invoke(self, function_name_or_arn: str, event: Any) -> tuple[str, bool]:
        """Call the function; answer (JSON payload, whether it is a function error)."""
        try:
            result = self.handler(function_name_or_arn)(event, self.context(function_name_or_arn))
            return json.dumps(result), False
        except Exception as error:  # the Lambda runtime turns any escaping exception into this shape
            return json.dumps(error_payload(error)), True
