"""Local mode: the whole service on this machine, built from `template.yaml`.

The AWS emulator (`diskport_emulator.Emulator`, served) stands in for AWS: moto as a server inside this
process (S3, DynamoDB, SQS, KMS, EBS, Step Functions running the real ASL), the functions in instance
processes, each as its own role, the HTTP front, the queue pollers and the execution rules. Local mode adds
what is the service's own: the project callers act for (or AK/SK signatures), the OpenAPI document and API
page on the front, IMS error bodies, the uploads bucket, the banner, and a shutdown that waits for imports.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import FrameType
from typing import Literal

from diskport.observability import logger
from diskport.settings import get_settings
from diskport.stores import aws
from diskport.stores.jobs import JobStore

from diskport_emulator import ADMIN_KEY, Emulator, FunctionInstances, LocalStack, Serving, process_environment
from diskport_local import shutdown
from diskport_local.api_page import ims_error_response, local_pages
from diskport_local.openapi import openapi_document
from diskport_local.preloads import PRELOADED_SERVICE_MODULES

LOCAL_HOST = "127.0.0.1"
DEFAULT_API_PORT = 3000
DEFAULT_AWS_PORT = 5000
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
# The emulated account's administrator: the key the README, the CLI and the AWS CLI use against local mode.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": ADMIN_KEY[0], "AWS_SECRET_ACCESS_KEY": ADMIN_KEY[1]}
# DISKPORT_ENFORCE_IAM=0 turns IAM enforcement off.
ENFORCE_IAM_VARIABLE = "DISKPORT_ENFORCE_IAM"
# The bucket `diskport import FILE` uploads local files to; any bucket in the emulator may be a source.
UPLOADS_BUCKET = "diskport-uploads"
# PutSnapshotBlock requests a convert worker keeps in flight in local mode. The default (32) carries ~75 MiB/s at
# EBS's ~200 ms a request; the emulated EBS answers in well under a millisecond, so 8 import as fast, and each
# worker holds a quarter of the blocks (2 per request in flight) and the emulator a quarter of the request threads.
LOCAL_WRITERS_PER_CHUNK = 8


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
            enforce_iam=environ.get(ENFORCE_IAM_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off"),
        )


def local_auth_of(text: str) -> Literal["open", "aksk"]:
    if text not in ("open", "aksk"):
        raise ValueError(f"LOCAL_AUTH is open or aksk, not {text!r}")
    return "aksk" if text == "aksk" else "open"


def access_key_environment() -> dict[str, str]:
    """What local mode sets on top of local_environment when it verifies AK/SK signatures."""
    # The operator's key routes are IAM-guarded when deployed; local mode has no IAM and listens on loopback only.
    return {"PROJECT_ID_SOURCE": "access_key", "OPERATOR_AUTH": "open"}


def local_environment(stack: LocalStack, project_id: str, aws_endpoint: str) -> dict[str, str]:
    """The process environment the functions need in local mode: every function's, pointed at the emulator."""
    return {**process_environment(stack, aws_endpoint), **local_settings(project_id)}


def local_settings(project_id: str) -> dict[str, str]:
    """What local mode sets over every function's own environment, besides where the emulator is."""
    return {
        "PROJECT_ID_SOURCE": "local",
        "LOCAL_PROJECT_ID": project_id,
        "UPLOAD_PROJECT_ID": project_id,
        # No X-Ray daemon and no CloudWatch here: traces and metric blobs would only clutter the log.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def convert_writers_setting(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`WRITERS_PER_CHUNK` for local mode's convert workers, unless set, or unless EBS latency is emulated."""
    if "WRITERS_PER_CHUNK" in environ or float(environ.get("DISKPORT_EBS_PUT_LATENCY_MS") or 0):
        return {}  # the caller's choice, or the deployed default that carries EBS's latency
    return {"WRITERS_PER_CHUNK": str(LOCAL_WRITERS_PER_CHUNK)}


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
    """The running local stack: the AWS emulator serving the template, with local mode's own settings and pages."""

    options: LocalModeOptions = field(default_factory=LocalModeOptions.from_environment)
    stack: LocalStack = field(default_factory=LocalStack)
    api_url: str = ""
    aws_url: str = ""
    emulator: Emulator | None = None

    def __post_init__(self) -> None:
        if self.options.auth == "aksk" and "Authentication" not in self.stack.parameters:
            self.stack = LocalStack(
                stack_name=self.stack.stack_name, parameters={**self.stack.parameters, "Authentication": "AccessKey"}
            )

    @property
    def functions(self) -> FunctionInstances | None:
        """The function instances, once started."""
        functions = self.emulator.functions if self.emulator is not None else None
        return functions if isinstance(functions, FunctionInstances) else None

    def start(self) -> None:
        ensure_port_free(self.options.aws_port, "AWS emulator")
        ensure_port_free(self.options.api_port, "API front")
        if self.options.enforce_iam:
            # Any bucket of the emulator may be a source (docs/local-mode.md): the deployment SourceBuckets=* gives.
            self.stack.parameters.setdefault("SourceBuckets", "*")
        settings = local_settings(self.options.project_id)
        settings.update(convert_writers_setting())
        if self.options.auth == "aksk":
            settings.update(access_key_environment())  # every instance verifies signatures, as deployed
        emulator = Emulator(
            self.stack,
            enforce_iam=self.options.enforce_iam,
            serving=Serving(
                aws_port=self.options.aws_port,
                api_port=self.options.api_port,
                host=LOCAL_HOST,
                function_environment=settings,
                pages=local_pages(cache(lambda: openapi_document(self.stack, emulator.handler_module))),
                error_response=ims_error_response,
                verbose=self.options.verbose,
                preloaded_modules=PRELOADED_SERVICE_MODULES,
            ),
        )
        self.emulator = emulator
        emulator.start()
        self.aws_url, self.api_url = emulator.aws_url, emulator.api_url
        # This process runs handler code too (the OpenAPI document, the shutdown's job reads): point it at the
        # emulator with every function's variables.
        os.environ.update({**emulator.process_environment(), **settings})
        get_settings.cache_clear()
        aws.forget_clients()
        aws.client("s3").create_bucket(Bucket=UPLOADS_BUCKET)
        self._load_functions(emulator)

    def _load_functions(self, emulator: Emulator) -> None:
        """Import every handler now, so a broken one shows at start rather than mid-import."""
        for logical_id in self.stack.resources_of_type("AWS::Serverless::Function"):
            try:
                emulator.handler_module(logical_id)
            except Exception as error:
                logger.warning(
                    "Function not loadable; calls to it will fail", extra={"function": logical_id, "error": str(error)}
                )

    def stop_taking_uploads(self) -> None:
        if self.emulator is not None:
            self.emulator.stop_polling_queues()

    def stop_execution(self, execution_arn: str, *, error: str, cause: str) -> None:
        if self.emulator is not None:
            self.emulator.stop_execution(execution_arn, error=error, cause=cause)

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()

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
        stop_execution=local_mode.stop_execution,
        stop_taking_work=local_mode.stop_taking_uploads,
        say=lambda text: print(text, flush=True),
        job_has_failed=lambda job_id: getattr(JobStore().get(job_id), "status", "FAIL") == "FAIL",
    )
    print("diskport local mode is stopping.", flush=True)
    local_mode.stop()
    if not drained:
        os._exit(1)  # the steps still running in this process's threads end with it, as their executions did
    return 0
