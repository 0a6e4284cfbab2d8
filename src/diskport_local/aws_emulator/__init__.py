"""The AWS emulator `diskport serve` and the tests share: moto, made to behave like AWS where diskport needs it.

The one interface, for local mode (`diskport_local.server.LocalMode`) and the tests (`tests/conftest.py`):

- `LocalStack`: `template.yaml` resolved for a local stack (names, ARNs, intrinsics, routes, functions);
- `provision(stack, ..., function_roles=...)`: creates the template's tables, buckets, queues, functions
  (with a role of their own each, when IAM is enforced) and state machine in moto, and installs the strict
  services;
- `install_strict_services()`: EBS direct APIs as documented (`ebs`; in server mode PutSnapshotBlock is
  answered beside moto's generic dispatch), ranged S3 reads that read only their range (`s3_ranges`),
  multipart uploads completed without joining their parts in memory (`s3_multipart`), and moto's server
  freeing each request's memory, keeping connections open and finding each request's service fast
  (`moto_server`);
- `FunctionInstances`: the function runtime of local mode, each instance its own process;
  `InProcessLambdas`: the runtime of the in-process tests, one event per function at a time, which
  lets a test inject faults into the handlers' own clients;
- `iam`: roles from the template's policies, per-function credentials, enforcement on and off;
- the HTTP front (`diskport_local.front`), the SQS pollers (`diskport_local.sqs_poller`) and the
  execution status watchers (`diskport_local.execution_events`), which `LocalMode` wires up.

Built against moto `MOTO_VERSION`: the strict services replace moto internals by name (the EBS backend and
responses, `FakeKey.value`, `FakeMultipart.complete`, the server's dispatcher, request class and request
handler, the IAM authorizer), so `check_moto_version()` refuses another version until they have been checked
against it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diskport_local.aws_emulator import iam
    from diskport_local.aws_emulator.function_instances import FunctionInstances
    from diskport_local.aws_emulator.strict_services import install_strict_services
    from diskport_local.provision import provision
    from diskport_local.runtime import InProcessLambdas
    from diskport_local.template import LocalStack

# Loaded on first use: a function instance process imports this package too, and should not pay for moto.
_EXPORTS = {
    "iam": ("diskport_local.aws_emulator.iam", None),
    "FunctionInstances": ("diskport_local.aws_emulator.function_instances", "FunctionInstances"),
    "install_strict_services": ("diskport_local.aws_emulator.strict_services", "install_strict_services"),
    "provision": ("diskport_local.provision", "provision"),
    "InProcessLambdas": ("diskport_local.runtime", "InProcessLambdas"),
    "LocalStack": ("diskport_local.template", "LocalStack"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


MOTO_VERSION = "5.2.5"


class UnsupportedMotoError(RuntimeError):
    """The installed moto is not the version the emulator's strict services were built against."""


def check_moto_version(installed: str | None = None) -> None:
    installed = installed or version("moto")
    if installed != MOTO_VERSION:
        raise UnsupportedMotoError(
            f"diskport's AWS emulator is built against moto {MOTO_VERSION}, not {installed}: "
            "check aws_emulator's replacements of moto internals against it, then update MOTO_VERSION."
        )


__all__ = [
    "MOTO_VERSION",
    "FunctionInstances",
    "InProcessLambdas",
    "LocalStack",
    "UnsupportedMotoError",
    "check_moto_version",
    "iam",
    "install_strict_services",
    "provision",
]
