"""AWS on this machine for the stack `template.yaml` declares: moto, made to behave like AWS where diskport needs it.

What moto lacks, this package adds: the template resolved for a local stack (`template`), its resources
provisioned (`provision`), a Lambda runtime (`lambda_runtime`), API Gateway's HTTP front, the SQS event source
and EventBridge's execution rules (`event_sources`), IAM enforced with each function as its own role (`iam`),
and services as strict as AWS documents them (`services`: EBS direct APIs, ranged S3 reads, S3 event
notifications with every documented field, multipart uploads completed on disk, isolated DynamoDB
transactions, and a server that frees each request once answered). It knows nothing of the service's own
code: the functions are whatever the template names, and nothing here imports `diskport` or `diskport_local`.

The one interface, `Emulator`, which `diskport serve` and the tests share:

    emulator = Emulator(LocalStack(), act_as=...)         # moto in this process, the functions in threads:
    emulator.start()                                       # the in-process tests
    emulator.functions.handler("GetJobFunction")(event, emulator.functions.context("GetJobFunction"))
    emulator.stop()

    emulator = Emulator(stack, serving=Serving(aws_port=5000, api_port=3000, function_environment=...))
    emulator.start()                                       # diskport serve: moto as a server on 127.0.0.1, each
    emulator.aws_url, emulator.api_url                     # function instance a process, the HTTP front, the
    emulator.stop()                                        # queue pollers and the execution rules running

- `start()` checks moto's version, starts moto, creates the callers (the administrator behind `ADMIN_KEY`,
  `testing` / `testing`), provisions every resource of the template (each function with a role of its own
  holding its policies, when IAM is enforced), installs the function runtime in moto's Lambda and turns IAM
  enforcement on (`enforce_iam=False` leaves it off); `run_executions=False` records executions without
  running them;
- `stop()` undoes all of it, and removes the emulated snapshots' block files;
- `aws_url` and `api_url`: the endpoints, once serving (in this process boto3 is intercepted instead);
- `invoke(function, event)` -> (JSON payload, whether it is a function error), by logical id, name or ARN;
  `functions`, the runtime itself: in this process `InProcessLambdas`, whose `handler(name)`, `context(name)`
  and `acting_as(name)` (run a block as the function's role) the tests use; served `FunctionInstances`;
- `act_as`, in this process: how the functions' code takes up credentials for a block (the service's client
  factory); each invocation, and each instance's loading, runs inside it with the function's role;
- `process_environment()`: what this process needs in its environment to run the functions in it (also a
  function of the package: `process_environment(stack, aws_url)`);
- `handler_module(name)`: the function's handler module loaded here, to read what it declares;
- `http_api_event(route, path=..., ...)`: the event API Gateway hands a route's function (`LocalStack.api_routes()`),
  for calling an API function directly;
- served: `Serving.pages` and `Serving.error_response` let whoever serves answer pages of its own on the HTTP
  front (`FrontRequest` -> `FrontResponse`), and shape the answers no function gives; `stop_polling_queues()`;
  `stop_execution(arn, error=..., cause=...)`, StopExecution as AWS does it, the ABORTED event at once.

Built against moto `MOTO_VERSION`: the strict services replace moto internals by name (the EBS backend and
responses, `FakeKey.value`, the S3 notification builders, `FakeMultipart.complete`, the server's dispatcher,
request class and request handler, the IAM authorizer), so `check_moto_version()` refuses another version
until they have been checked against it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskport_emulator.emulator import Emulator, Serving, process_environment
    from diskport_emulator.event_sources.http_api_events import http_api_event
    from diskport_emulator.event_sources.http_front import FrontRequest, FrontResponse
    from diskport_emulator.iam import ADMIN_KEY
    from diskport_emulator.lambda_runtime.in_process import InProcessLambdas
    from diskport_emulator.lambda_runtime.instances import FunctionInstances
    from diskport_emulator.services import install_strict_services
    from diskport_emulator.template import LOCAL_REGION, LocalStack

# Loaded on first use: a function instance process imports this package too, and should not pay for moto.
_EXPORTS = {
    "ADMIN_KEY": "diskport_emulator.iam",
    "Emulator": "diskport_emulator.emulator",
    "FrontRequest": "diskport_emulator.event_sources.http_front",
    "FrontResponse": "diskport_emulator.event_sources.http_front",
    "FunctionInstances": "diskport_emulator.lambda_runtime.instances",
    "InProcessLambdas": "diskport_emulator.lambda_runtime.in_process",
    "LOCAL_REGION": "diskport_emulator.template",
    "LocalStack": "diskport_emulator.template",
    "Serving": "diskport_emulator.emulator",
    "http_api_event": "diskport_emulator.event_sources.http_api_events",
    "install_strict_services": "diskport_emulator.services",
    "process_environment": "diskport_emulator.emulator",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


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


__all__ = [
    "ADMIN_KEY",
    "LOCAL_REGION",
    "MOTO_VERSION",
    "Emulator",
    "FrontRequest",
    "FrontResponse",
    "FunctionInstances",
    "InProcessLambdas",
    "LocalStack",
    "Serving",
    "UnsupportedMotoError",
    "check_moto_version",
    "http_api_event",
    "install_strict_services",
    "process_environment",
]
