"""AWS on this machine for the stack `template.yaml` declares: moto, made to behave like AWS where diskport needs it.

What moto lacks, this package adds: the template resolved for a local stack (`template`), its resources
provisioned (`provision`), a Lambda runtime (`lambda_runtime`), API Gateway's HTTP front, the SQS event source
and EventBridge's execution rules (`event_sources`), IAM enforced with each function as its own role (`iam`),
and services as strict as AWS documents them (`services`: EBS direct APIs, ranged S3 reads, isolated
DynamoDB transactions). It knows nothing of diskport's own code: the functions are whatever the template names.

The one interface, `Emulator`, for the in-process tests (local mode, `diskport_local.server`, still wires
the function instances, the HTTP front and the pollers itself):

    emulator = Emulator(LocalStack(), act_as=...)        # moto in this process, the functions in threads
    emulator.start()                                      # resources provisioned, IAM on
    emulator.functions.handler("GetJobFunction")(event, emulator.functions.context("GetJobFunction"))
    emulator.stop()

- `start()` checks moto's version, starts moto, creates the callers (the administrator behind `testing` /
  `testing`), provisions every resource of the template (with a role of its own for each function when IAM
  is enforced), installs the function runtime in moto's Lambda, and turns IAM enforcement on;
- `stop()` undoes all of it, and removes the emulated snapshots' block files;
- `functions`: the runtime: `invoke(name, event)` -> (payload, function error), `handler(name)`,
  `context(name)` and `acting_as(name)` (run a block as the function's role);
- `process_environment()`: the variables this process needs to run every function in it.

Built against moto `MOTO_VERSION`: the strict services replace moto internals by name (the EBS backend and
responses, `FakeKey.value`, the IAM authorizer), so `check_moto_version()` refuses another version until
they have been checked against it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from diskport_emulator.lambda_runtime.in_process import InProcessLambdas
    from diskport_emulator.lambda_runtime.instances import FunctionInstances
    from diskport_emulator.services import install_strict_services
    from diskport_emulator.template import LocalStack

    # How this process's code takes up a function's credentials (the variables AWS_ACCESS_KEY_ID,
    # AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) for the AWS calls made inside the block.
    ActAs = Callable[[Mapping[str, str]], AbstractContextManager[object]]

# Loaded on first use: a function instance process imports this package too, and should not pay for moto.
_EXPORTS = {
    "FunctionInstances": ("diskport_emulator.lambda_runtime.instances", "FunctionInstances"),
    "InProcessLambdas": ("diskport_emulator.lambda_runtime.in_process", "InProcessLambdas"),
    "install_strict_services": ("diskport_emulator.services", "install_strict_services"),
    "LocalStack": ("diskport_emulator.template", "LocalStack"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module_name), attribute)


MOTO_VERSION = "5.2.5"


class UnsupportedMotoError(RuntimeError):
    """The installed moto is not the version the emulator's strict services were built against."""


def check_moto_version(installed: str | None = None) -> None:
    installed = installed or version("moto")
    if installed != MOTO_VERSION:
        raise UnsupportedMotoError(
            f"diskport's AWS emulator is built against moto {MOTO_VERSION}, not {installed}: "
            "check the emulator's replacements of moto internals against it, then update MOTO_VERSION."
        )


class Emulator:
    """The stack of `template.yaml` in moto, its functions runnable: in this process (the tests) or served."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        enforce_iam: bool = True,
        run_executions: bool = True,
        act_as: ActAs | None = None,
    ) -> None:
        """`run_executions`: Step Functions runs the state machine (else executions are only recorded);
        `act_as`: how the functions' code takes up their role's credentials in this process (with IAM enforced)."""
        self.stack = stack
        self.enforce_iam = enforce_iam
        self.run_executions = run_executions
        self._act_as = act_as
        self.aws_url = ""
        self.api_url = ""
        self._functions: InProcessLambdas | None = None
        self._mock: Any = None
        self._replaced_invoke: Any = None

    @property
    def functions(self) -> InProcessLambdas:
        """The function runtime (once started)."""
        if self._functions is None:
            raise RuntimeError("the emulator has not started")
        return self._functions

    def process_environment(self) -> dict[str, str]:
        """What this process needs in its environment to run every function in it: their variables, merged."""
        from diskport_emulator.template import function_environment_union

        return function_environment_union(self.stack)

    def start(self) -> None:
        from moto import mock_aws
        from moto.awslambda.models import LambdaFunction

        from diskport_emulator import iam
        from diskport_emulator.lambda_runtime.in_process import InProcessLambdas
        from diskport_emulator.provision import provision

        check_moto_version()
        config: dict[str, Any] = {"stepfunctions": {"execute_state_machine": self.run_executions}}
        if self.enforce_iam:
            # moto would sign this process's requests with a key of its own (FOOBARKEY): keep the caller's, the
            # administrator's `testing` / `testing`, which IAM knows.
            config["core"] = {"mock_credentials": False}
        self._mock = mock_aws(config=config)  # type: ignore[call-overload]
        self._mock.start()
        if self.enforce_iam:
            iam.create_callers(self.stack)
        provision(self.stack, self._session(), function_roles=self.enforce_iam)
        credentials = iam.function_credentials(self.stack, self._client("sts")) if self.enforce_iam else {}
        self._functions = InProcessLambdas(self.stack, credentials=credentials, act_as=self._act_as)
        self._replaced_invoke = LambdaFunction._invoke_lambda
        self._functions.install()
        if self.enforce_iam:
            iam.turn_enforcement_on()

    def stop(self) -> None:
        from moto.awslambda.models import LambdaFunction

        from diskport_emulator import iam
        from diskport_emulator.services.ebs import remove_block_files

        if self.enforce_iam:
            iam.turn_enforcement_off()
        if self._replaced_invoke is not None:
            LambdaFunction._invoke_lambda = self._replaced_invoke  # type: ignore[method-assign]
            self._replaced_invoke = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        remove_block_files()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _session(self) -> Any:
        """A session of the emulated account's administrator (the key `testing` / `testing`)."""
        import boto3

        from diskport_emulator.iam import ADMIN_KEY

        key, secret = ADMIN_KEY
        return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.stack.region)

    def _client(self, service: str) -> Any:
        return self._session().client(service, endpoint_url=self.aws_url or None)


__all__ = [
    "MOTO_VERSION",
    "Emulator",
    "FunctionInstances",
    "InProcessLambdas",
    "LocalStack",
    "UnsupportedMotoError",
    "check_moto_version",
    "install_strict_services",
]
