"""Local mode: the whole service on this machine, built from `template.yaml`.

moto, in server mode inside this process, stands in for AWS (S3, DynamoDB, SQS, KMS, EBS, Step Functions
running the real ASL). The project's functions run in instance processes, each as its own role
(`aws_emulator.function_instances`, `aws_emulator.iam`): Step Functions reaches them through moto's Lambda,
queues through `SqsPoller`, HTTP clients through the `ApiFront`. Every table, bucket, queue, function,
route and the state machine come from the template.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import FrameType
from typing import Any, Literal

from diskport import aws
from diskport.jobs import JobStore
from diskport.observability import logger
from diskport.settings import get_settings

from diskport_emulator import check_moto_version, iam
from diskport_emulator.event_sources.execution_events import ExecutionStatusWatcher, execution_status_rules
from diskport_emulator.event_sources.http_front import ApiFront, FrontServer
from diskport_emulator.event_sources.sqs_poller import SqsPoller, sqs_mappings
from diskport_emulator.lambda_runtime.in_process import InProcessLambdas
from diskport_emulator.lambda_runtime.instances import FunctionInstances
from diskport_emulator.provision import provision
from diskport_emulator.services.ebs import remove_block_files
from diskport_emulator.template import LocalStack, function_environment_union
from diskport_local import shutdown
from diskport_local.openapi import openapi_document

LOCAL_HOST = "127.0.0.1"
DEFAULT_API_PORT = 3000
DEFAULT_AWS_PORT = 5000
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# The bucket `diskport import FILE` uploads local files to; any bucket in the emulator may be a source.
UPLOADS_BUCKET = "diskport-uploads"


@dataclass(frozen=True)
class LocalModeOptions:
    """Where local mode listens and which project its callers act for. Port 0 picks a free port."""

    api_port: int = DEFAULT_API_PORT
    aws_port: int = DEFAULT_AWS_PORT
    project_id: str = DEFAULT_PROJECT_ID
    # Keep the emulator's own logs: every AWS call, and the interpreter's account of each failed state.
    verbose: bool = False
    # "open": every caller acts for project_id. "aksk": every request must carry an IMS AK/SK signature of a key
    # made with `diskport access-key create`, and acts for that key's project, as a stack deployed with
    # Authentication=AccessKey does.
    auth: Literal["open", "aksk"] = "open"
    # Each function calls AWS as its own role, with the template's policies, and moto enforces them.
    enforce_iam: bool = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> LocalModeOptions:
        """LOCAL_API_PORT, LOCAL_AWS_PORT, LOCAL_PROJECT_ID and LOCAL_AUTH (open or aksk), each optional."""
        return cls(
            api_port=int(environ.get("LOCAL_API_PORT") or DEFAULT_API_PORT),
            aws_port=int(environ.get("LOCAL_AWS_PORT") or DEFAULT_AWS_PORT),
            project_id=environ.get("LOCAL_PROJECT_ID") or DEFAULT_PROJECT_ID,
            auth=local_auth_of(environ.get("LOCAL_AUTH") or "open"),
            enforce_iam=environ.get(iam.ENFORCE_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off"),
        )


def local_auth_of(text: str) -> Literal["open", "aksk"]:
    if text not in ("open", "aksk"):
        raise ValueError(f"LOCAL_AUTH is open or aksk, not {text!r}")
    return "aksk" if text == "aksk" else "open"


def access_key_environment() -> dict[str, str]:
    """What local mode sets on top of local_environment when it verifies AK/SK signatures."""
    # The operator's key routes are IAM-guarded when deployed; local mode has no IAM and listens on loopback only.
    return {"PROJECT_ID_SOURCE": "access_key", "OPERATOR_AUTH": "open"}


def local_environment(stack: LocalStack, project_id: str, aws_endpoint: str, aws_port: int) -> dict[str, str]:
    """The process environment the functions need in local mode."""
    return {**function_environment_union(stack), **local_overrides(stack, project_id, aws_endpoint, aws_port)}


def local_overrides(stack: LocalStack, project_id: str, aws_endpoint: str, aws_port: int) -> dict[str, str]:
    """What local mode sets over every function's own environment."""
    return {
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": stack.region,
        "AWS_REGION": stack.region,
        "AWS_ENDPOINT_URL": aws_endpoint,
        # moto's Step Functions interpreter calls Lambda and DynamoDB at localhost:$MOTO_PORT.
        "MOTO_PORT": str(aws_port),
        "PROJECT_ID_SOURCE": "local",
        "LOCAL_PROJECT_ID": project_id,
        "UPLOAD_PROJECT_ID": project_id,
        # No X-Ray daemon and no CloudWatch here: traces and metric blobs would only clutter the log.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def ensure_port_free(port: int, what: str) -> None:
    """A clear error, before anything starts, when a chosen port is taken (0 lets the system choose).

    The probe binds as the servers will, with SO_REUSEADDR (http.server and werkzeug set it): connections of a
    local mode just stopped linger in TIME_WAIT for a minute and must not keep the next one from starting, while
    a port another process listens on is still refused (Linux lets no two sockets bind it while one listens).
    """
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError as error:
            raise OSError(f"Port {port} for the {what} is in use ({error.strerror}); choose another.") from error


@dataclass
class LocalMode:
    """The running local stack: AWS emulator, in-process functions, queue pollers and the HTTP front."""

    options: LocalModeOptions = field(default_factory=LocalModeOptions.from_environment)
    stack: LocalStack = field(default_factory=LocalStack)
    api_url: str = ""
    aws_url: str = ""
    _moto_server: Any = None
    _front: FrontServer | None = None
    _pollers: list[SqsPoller] = field(default_factory=list)
    _watchers: list[ExecutionStatusWatcher] = field(default_factory=list)
    functions: FunctionInstances | None = None

    def __post_init__(self) -> None:
        if self.options.auth == "aksk" and "Authentication" not in self.stack.parameters:
            self.stack = LocalStack(
                stack_name=self.stack.stack_name, parameters={**self.stack.parameters, "Authentication": "AccessKey"}
            )

    def start(self) -> None:
        from moto.server import ThreadedMotoServer  # the emulator is a development dependency

        ensure_port_free(self.options.aws_port, "AWS emulator")
        ensure_port_free(self.options.api_port, "API front")
        check_moto_version()
        if not self.options.verbose:
            # The emulator would log every AWS call, and a screenful for each failed import (whose job
            # already records why): the functions' own logs say what matters.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
            warnings.filterwarnings("ignore", message="No application metrics to publish")
        self._moto_server = ThreadedMotoServer(ip_address=LOCAL_HOST, port=self.options.aws_port, verbose=False)
        self._moto_server.start()
        aws_port = int(self._moto_server.get_host_and_port()[1])  # the one the system chose, for port 0
        self.aws_url = f"http://{LOCAL_HOST}:{aws_port}"
        os.environ.update(local_environment(self.stack, self.options.project_id, self.aws_url, aws_port))
        if self.options.auth == "aksk":
            os.environ.update(access_key_environment())
        get_settings.cache_clear()
        aws.forget_clients()

        _post_json(f"{self.aws_url}/moto-api/reset", {})  # an emulator started earlier in this process leaves state
        _post_json(f"{self.aws_url}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        if self.options.enforce_iam:
            iam.create_callers(self.stack)  # before any signed request: the admin behind `testing`
            # Any bucket of the emulator may be a source (docs/local-mode.md): the deployment SourceBuckets=* gives.
            self.stack.parameters.setdefault("SourceBuckets", "*")
        provision(self.stack, endpoint=self.aws_url, function_roles=self.options.enforce_iam)
        aws.client("s3").create_bucket(Bucket=UPLOADS_BUCKET)
        credentials = iam.function_credentials(self.stack, aws.client("sts")) if self.options.enforce_iam else {}

        lambdas = InProcessLambdas(self.stack)  # only to read the API functions' OpenAPI descriptions
        self._load_functions(lambdas)
        overrides = local_overrides(self.stack, self.options.project_id, self.aws_url, aws_port)
        if self.options.auth == "aksk":
            overrides.update(access_key_environment())  # every instance verifies signatures, as deployed
        # Every invocation runs in an instance process, with its function's own role when IAM is enforced.
        self.functions = FunctionInstances(self.stack, overrides, function_overrides=credentials)
        self.functions.install()
        if self.options.enforce_iam:
            iam.turn_enforcement_on()
        for mapping in sqs_mappings(self.stack):
            poller = SqsPoller(mapping, _invoker_of(self.functions, mapping.function), region=self.stack.region)
            poller.start()
            self._pollers.append(poller)
        for rule in execution_status_rules(self.stack):
            watcher = ExecutionStatusWatcher(rule, _invoker_of(self.functions, rule.function))
            watcher.start()
            self._watchers.append(watcher)

        document = cache(lambda: openapi_document(lambdas))
        front = ApiFront(self.stack.api_routes(), self.functions.invoke, document)
        self._front = FrontServer(front, LOCAL_HOST, self.options.api_port)
        self._front.start()
        self.api_url = self._front.url

    def _load_functions(self, lambdas: InProcessLambdas) -> None:
        """Import every handler now, so a broken one shows at start rather than mid-import."""
        for logical_id in self.stack.resources_of_type("AWS::Serverless::Function"):
            try:
                lambdas.module(logical_id)
            except Exception as error:
                logger.warning(
                    "Function not loadable; calls to it will fail", extra={"function": logical_id, "error": str(error)}
                )

    def stop_taking_uploads(self) -> None:
        for poller in self._pollers:
            poller.stop()

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()
        for watcher in self._watchers:
            watcher.stop()
        if self._front is not None:
            self._front.stop()
        if self.functions is not None:
            self.functions.stop()
        if self._moto_server is not None:
            self._moto_server.stop()
        remove_block_files()  # the emulated snapshots' block files go with local mode
        if self.options.enforce_iam:
            iam.turn_enforcement_off()

    def banner(self) -> str:
        watched_bucket = self.stack.physical_name("WatchedBucket")
        suffixes = " ".join(watched_suffixes(self.stack))
        api_port, aws_port = self.api_url.rpartition(":")[2], self.aws_url.rpartition(":")[2]
        # The CLI finds local mode by these variables; say them when the ports are not the defaults.
        cli_ports = (
            ""
            if (api_port, aws_port) == (str(DEFAULT_API_PORT), str(DEFAULT_AWS_PORT))
            else f"LOCAL_API_PORT={api_port} LOCAL_AWS_PORT={aws_port} "
        )
        if self.options.auth == "aksk":
            return "\n".join(
                [
                    "diskport local mode is running (Ctrl-C stops it), verifying IMS AK/SK signatures.",
                    f"  IMS API        {self.api_url}    OpenAPI: {self.api_url}/openapi.json",
                    f"  API page       {self.api_url}/swagger    (Swagger UI of the OpenAPI document)",
                    f"  AWS emulator   {self.aws_url}    S3, DynamoDB, SQS, KMS, EBS, Step Functions (moto)",
                    "  projects       each access key's own; unsigned requests are refused (401)",
                    "",
                    "Make a first access key (its secret is shown once):",
                    f"  {cli_ports}.venv/bin/diskport access-key create --project {self.options.project_id}",
                    "then sign with it as IMS clients do, e.g. the Python SDK:",
                    "  BasicCredentials(ACCESS_KEY, SECRET_KEY, PROJECT_ID) and ImsClient...with_endpoints"
                    f"(['{self.api_url}'])",
                    f"  {cli_ports}.venv/bin/diskport access-key list     # ids, projects, created, last used",
                ]
            )
        return "\n".join(
            [
                "diskport local mode is running (Ctrl-C stops it).",
                f"  IMS API        {self.api_url}    OpenAPI: {self.api_url}/openapi.json",
                f"  API page       {self.api_url}/swagger    (Swagger UI of the OpenAPI document)",
                f"  AWS emulator   {self.aws_url}    S3, DynamoDB, SQS, KMS, EBS, Step Functions (moto)",
                f"  project id     {self.options.project_id}",
                f"  watched bucket {watched_bucket}   uploads ending {suffixes} start imports",
                "",
                "Try:",
                "  qemu-img create -f qcow2 /tmp/disk.qcow2 64M",
                f"  {cli_ports}.venv/bin/diskport import /tmp/disk.qcow2 --name my-first-disk --min-disk 40 --wait",
                f"  {cli_ports}.venv/bin/diskport images",
                "  # or upload to the watched bucket, with the AWS CLI:",
                f"  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --endpoint-url {self.aws_url} "
                f"s3 cp /tmp/disk.qcow2 s3://{watched_bucket}/disk.qcow2",
            ]
        )


def watched_suffixes(stack: LocalStack) -> list[str]:
    """The file name endings whose upload to the watched bucket starts an import, as the template filters them."""
    notifications = stack.resources["WatchedBucket"]["Properties"].get("NotificationConfiguration", {})
    return [
        rule["Value"]
        for configuration in notifications.get("QueueConfigurations", [])
        for rule in configuration.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        if rule["Name"] == "suffix"
    ]


def _invoker_of(lambdas: FunctionInstances, function: str) -> Any:
    return lambda event: lambdas.invoke(function, event)


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def serve(options: LocalModeOptions | None = None) -> int:
    """Run local mode in the foreground until Ctrl-C or SIGTERM."""
    local_mode = LocalMode(options or LocalModeOptions.from_environment())
    stopping = threading.Event()
    at_once = threading.Event()  # a second Ctrl-C or SIGTERM (shutdown.py)

    def _stop(_signal: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            at_once.set()
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        local_mode.start()
    except OSError as error:
        print(f"diskport: {error}", file=sys.stderr)
        local_mode.stop()
        return 1
    print(local_mode.banner(), flush=True)
    while not stopping.wait(timeout=1):
        pass
    drained = shutdown.drain(
        local_mode.stack.arn("ImportDataImageStateMachine"),
        at_once,
        watchers=local_mode._watchers,
        stop_taking_work=local_mode.stop_taking_uploads,
        say=lambda text: print(text, flush=True),
        job_has_failed=lambda job_id: getattr(JobStore().get(job_id), "status", "FAIL") == "FAIL",
    )
    print("diskport local mode is stopping.", flush=True)
    local_mode.stop()
    if not drained:
        os._exit(1)  # the steps still running in this process's threads end with it, as their executions did
    return 0
