"""`Emulator`: the stack of `template.yaml` in moto, its functions runnable, in this process or served over HTTP.

See the package's docstring (`diskport_emulator`) for the interface; this module is its implementation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diskport_emulator import check_moto_version
from diskport_emulator.template import LocalStack, function_environment_union

if TYPE_CHECKING:
    from types import ModuleType

    from diskport_emulator.event_sources.execution_events import ExecutionStatusWatcher
    from diskport_emulator.event_sources.http_front import ErrorResponse, FrontServer, Pages
    from diskport_emulator.event_sources.sqs_poller import SqsPoller
    from diskport_emulator.lambda_runtime.in_process import InProcessLambdas
    from diskport_emulator.lambda_runtime.instances import FunctionInstances

# How this process's code takes up a function's credentials (the variables AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) for the AWS calls made inside the block.
ActAs = Callable[[Mapping[str, str]], AbstractContextManager[object]]


@dataclass(frozen=True)
class Serving:
    """How the emulator serves (what `diskport serve` runs): on 127.0.0.1, each port 0 for a free one."""

    aws_port: int = 5000
    api_port: int = 3000
    host: str = "127.0.0.1"
    # Set over every function's own environment (the settings of whoever serves: a project id, ...).
    function_environment: Mapping[str, str] = field(default_factory=dict)
    # Pages the HTTP front serves before matching routes (an OpenAPI document), and the body of the answers no
    # function gives (no route, a body too large, a failed function); by default API Gateway's.
    pages: Pages | None = None
    error_response: ErrorResponse | None = None
    # Keep moto's own logs: every request, and the Step Functions interpreter's account of each failed state.
    verbose: bool = False
    # The functions' own modules that read nothing of a function's environment on import: imported once by the
    # fork servers, so every instance shares them (`lambda_runtime/forkserver.py`).
    preloaded_modules: tuple[str, ...] = ()


class Emulator:
    """The stack of `template.yaml` in moto, its functions runnable: in this process (the tests) or served."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        serving: Serving | None = None,
        enforce_iam: bool = True,
        run_executions: bool = True,
        act_as: ActAs | None = None,
    ) -> None:
        self.stack = stack
        self.serving = serving
        self.enforce_iam = enforce_iam
        self.run_executions = run_executions
        self._act_as = act_as
        self.aws_url = ""
        self.api_url = ""
        self._functions: InProcessLambdas | FunctionInstances | None = None
        self._modules: InProcessLambdas | None = None
        self._mock: Any = None
        self._moto_server: Any = None
        self._replaced_invoke: Any = None
        self._front: FrontServer | None = None
        self._pollers: list[SqsPoller] = []
        self._watchers: list[ExecutionStatusWatcher] = []

    # ------------------------------------------------------------------ what callers use
    @property
    def functions(self) -> InProcessLambdas | FunctionInstances:
        """The function runtime, once started: in this process `InProcessLambdas`, served `FunctionInstances`."""
        if self._functions is None:
            raise RuntimeError("the emulator has not started")
        return self._functions

    def invoke(self, function: str, event: Any) -> tuple[str, bool]:
        """Call a function by logical id, name or ARN: (JSON payload, whether it is a function error)."""
        return self.functions.invoke(function, event)

    def handler_module(self, function: str) -> ModuleType:
        """The function's handler module loaded in this process, for reading what it declares (its routes)."""
        from diskport_emulator.lambda_runtime.in_process import InProcessLambdas

        if isinstance(self._functions, InProcessLambdas):
            return self._functions.module(function)
        if self._modules is None:
            self._modules = InProcessLambdas(self.stack)
        return self._modules.module(function)

    def process_environment(self) -> dict[str, str]:
        """What this process needs in its environment to run every function in it (see `process_environment`)."""
        return process_environment(self.stack, self.aws_url)

    def stop_polling_queues(self) -> None:
        """Uploads stop starting work: the SQS event sources stop (served)."""
        for poller in self._pollers:
            poller.stop()

    def stop_execution(self, execution_arn: str, *, error: str, cause: str) -> None:
        """StopExecution as on AWS: the execution ends ABORTED, and the rules on aborted executions fire at once."""
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):  # one that ended meanwhile has nothing left to stop
            self._client("stepfunctions").stop_execution(executionArn=execution_arn, error=error, cause=cause)
        for watcher in self._watchers:
            watcher.deliver_stopped(execution_arn, error=error, cause=cause)

    # ------------------------------------------------------------------ start and stop
    def start(self) -> None:
        from moto.awslambda.models import LambdaFunction

        from diskport_emulator import iam
        from diskport_emulator.provision import provision

        check_moto_version()
        self._replaced_invoke = LambdaFunction._invoke_lambda
        if self.serving is None:
            self._start_mock()
        else:
            self._start_server(self.serving)
        if self.enforce_iam:
            iam.create_callers(self.stack)  # before any signed request: the administrator behind `testing`
        provision(self.stack, self._session(), endpoint=self.aws_url or None, function_roles=self.enforce_iam)
        credentials = iam.function_credentials(self.stack) if self.enforce_iam else {}
        if self.serving is None:
            from diskport_emulator.lambda_runtime.in_process import InProcessLambdas

            self._functions = InProcessLambdas(self.stack, credentials=credentials, act_as=self._act_as)
        else:
            from diskport_emulator.lambda_runtime.instances import FunctionInstances

            overrides = {**endpoint_environment(self.stack, self.aws_url), **self.serving.function_environment}
            # Every invocation runs in an instance process, as its function's own role when IAM is enforced.
            self._functions = FunctionInstances(
                self.stack,
                overrides,
                function_overrides=credentials,
                preloaded_modules=self.serving.preloaded_modules,
            )
        self._functions.install()
        if self.enforce_iam:
            iam.turn_enforcement_on()
        if self.serving is not None:
            self._start_event_sources(self.serving)

    def _start_mock(self) -> None:
        from moto import mock_aws

        config: dict[str, Any] = {"stepfunctions": {"execute_state_machine": self.run_executions}}
        if self.enforce_iam:
            # moto would sign this process's requests with a key of its own (FOOBARKEY): keep the caller's, the
            # administrator's `testing` / `testing`, which IAM knows.
            config["core"] = {"mock_credentials": False}
        self._mock = mock_aws(config=config)  # type: ignore[call-overload]
        self._mock.start()

    def _start_server(self, serving: Serving) -> None:
        from moto.server import ThreadedMotoServer

        from diskport_emulator.lambda_runtime.instance import share_sdk_data

        # moto's backends, the provisioning and the pollers each make boto3 sessions, and each session read the SDK's
        # data again (endpoints ten times over, DynamoDB's model four): one loader for the process, ~60 MiB less.
        share_sdk_data()

        if not serving.verbose:
            # moto would log every request, and a screenful for each failed state (the functions log what matters).
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
            warnings.filterwarnings("ignore", message="No application metrics to publish")
        self._moto_server = ThreadedMotoServer(ip_address=serving.host, port=serving.aws_port, verbose=False)
        self._moto_server.start()
        port = int(self._moto_server.get_host_and_port()[1])  # the one the system chose, for port 0
        self.aws_url = f"http://{serving.host}:{port}"
        _post_json(f"{self.aws_url}/moto-api/reset", {})  # an emulator started earlier in this process leaves state
        _post_json(f"{self.aws_url}/moto-api/config", {"stepfunctions": {"execute_state_machine": self.run_executions}})

    def _start_event_sources(self, serving: Serving) -> None:
        from diskport_emulator.event_sources.execution_events import ExecutionStatusWatcher, execution_status_rules
        from diskport_emulator.event_sources.http_front import ApiFront, FrontServer, api_gateway_error
        from diskport_emulator.event_sources.sqs_poller import SqsPoller, sqs_mappings

        functions = self.functions
        for mapping in sqs_mappings(self.stack):
            poller = SqsPoller(
                mapping, _invoker_of(functions, mapping.function), sqs=self._client("sqs"), region=self.stack.region
            )
            poller.start()
            self._pollers.append(poller)
        for rule in execution_status_rules(self.stack):
            watcher = ExecutionStatusWatcher(
                rule, _invoker_of(functions, rule.function), step_functions=self._client("stepfunctions")
            )
            watcher.start()
            self._watchers.append(watcher)
        front = ApiFront(
            self.stack.api_routes(),
            functions.invoke,
            pages=serving.pages,
            error_response=serving.error_response or api_gateway_error,
        )
        self._front = FrontServer(front, serving.host, serving.api_port)
        self._front.start()
        self.api_url = self._front.url

    def stop(self) -> None:
        from moto.awslambda.models import LambdaFunction

        from diskport_emulator import iam
        from diskport_emulator.lambda_runtime.instances import FunctionInstances
        from diskport_emulator.services.ebs import remove_block_files

        self.stop_polling_queues()
        for watcher in self._watchers:
            watcher.stop()
        if self._front is not None:
            self._front.stop()
        if isinstance(self._functions, FunctionInstances):
            self._functions.stop()
        if self._moto_server is not None:
            self._moto_server.stop()
        if self.enforce_iam:
            iam.turn_enforcement_off()
        if self._replaced_invoke is not None:
            LambdaFunction._invoke_lambda = self._replaced_invoke  # type: ignore[method-assign]
            self._replaced_invoke = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        remove_block_files()  # the emulated snapshots' block files go with the emulator

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def _session(self) -> Any:
        """A session of the emulated account's administrator (the key `testing` / `testing`)."""
        import boto3

        from diskport_emulator.iam import ADMIN_KEY

        key, secret = ADMIN_KEY
        return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.stack.region)

    def _client(self, service: str) -> Any:
        return self._session().client(service, endpoint_url=self.aws_url or None)


def process_environment(stack: LocalStack, aws_url: str = "") -> dict[str, str]:
    """What a process needs in its environment to run every function of the stack in it: their variables, merged
    (`ConflictingEnvironmentError` when two disagree), and, against an emulator served at `aws_url`, its endpoint."""
    return {**function_environment_union(stack), **endpoint_environment(stack, aws_url)}


def endpoint_environment(stack: LocalStack, aws_url: str) -> dict[str, str]:
    """What points a process at an emulator served at `aws_url`: the endpoint, region, the administrator's key."""
    if not aws_url:
        return {}
    from diskport_emulator.iam import ADMIN_KEY

    return {
        "AWS_ACCESS_KEY_ID": ADMIN_KEY[0],
        "AWS_SECRET_ACCESS_KEY": ADMIN_KEY[1],
        "AWS_DEFAULT_REGION": stack.region,
        "AWS_REGION": stack.region,
        "AWS_ENDPOINT_URL": aws_url,
        # moto's Step Functions interpreter calls Lambda and DynamoDB at localhost:$MOTO_PORT.
        "MOTO_PORT": aws_url.rpartition(":")[2],
    }


def _invoker_of(functions: InProcessLambdas | FunctionInstances, function: str) -> Callable[[Any], tuple[str, bool]]:
    return lambda event: functions.invoke(function, event)


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
