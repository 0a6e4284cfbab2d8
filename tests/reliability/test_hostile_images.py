"""Hostile input: every crafted file of the corpus, run through the whole pipeline, ends FAIL with its reason.

For each file of `hostile_corpus.py` the import runs on the emulated stack (real ASL, handlers in-process)
while an audit hook records every file this process opens and tracemalloc records its memory. Each import
must end FAIL with the expected IMS code and a reason naming the problem; no function may fail with anything
but the project's own errors; the engine may only be handed the S3 object (never a path); no file may be
opened but Python code, and none that an image names; memory and time stay within generous bounds.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from diskport import errors
from diskport.settings import get_settings
from diskport.stores import aws
from diskport.stores.source_objects import S3ObjectSource

from diskport_emulator import Emulator, InProcessLambdas, LocalStack, http_api_event
from tests.support.function_roles import acting_with

from .conftest import IMPORT_TIMEOUT_SECONDS, MIB, ReliabilityReport
from .hostile_corpus import FORBIDDEN_NAMES, IN_CI, CorpusBuilder, HostileFile

REPOSITORY = Path(__file__).resolve().parents[2]
# Generous: a refused import of a file of a few MiB needs a few MiB and a few seconds (the emulator included).
MEMORY_BOUND_BYTES = 256 * MIB
TIME_BOUND_SECONDS = 30.0
DISKPORT_ERRORS = {cls.__name__ for cls in vars(errors).values() if isinstance(cls, type)} | {"UnauthenticatedError"}


@dataclass
class OpenedFiles:
    """Every path this process opens while `recording` is set (all threads: the handlers run in moto's)."""

    recording: bool = False
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def audit(self, event: str, arguments: tuple[Any, ...]) -> None:
        if self.recording and event == "open" and arguments and isinstance(arguments[0], str | bytes):
            path = arguments[0] if isinstance(arguments[0], str) else arguments[0].decode(errors="replace")
            with self.lock:
                self.paths.append(path)


OPENED = OpenedFiles()
sys.addaudithook(OPENED.audit)  # audit hooks cannot be removed: this one only records while a test asks it to


def code_locations() -> list[str]:
    """Where the Python code this process loads (or quotes in a traceback) lives: the interpreter, the virtualenv,
    the repository."""
    return sorted(str(Path(root).resolve()) for root in {sys.prefix, sys.base_prefix, sys.exec_prefix, REPOSITORY})


# The functions that read the image file; their memory is traced while any of them runs.
INSPECTING_FUNCTIONS = {"FetchSourceFunction", "ConvertChunkFunction"}


@dataclass
class TracedMemory:
    """The peak of memory allocated while the functions that read the image run (chunks may run at once)."""

    running: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            if self.running == 0:
                tracemalloc.start()
            self.running += 1

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                self.peak = max(self.peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()


@dataclass
class HostileStack:
    stack: LocalStack
    lambdas: InProcessLambdas
    bucket: str
    engine_sources: list[str] = field(default_factory=list)
    function_errors: list[str] = field(default_factory=list)
    memory: TracedMemory = field(default_factory=TracedMemory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, qemu_available: None) -> list[HostileFile]:
    return CorpusBuilder(tmp_path_factory.mktemp("hostile-corpus")).build()


@pytest.fixture(scope="module")
def hostile_stack() -> Iterator[HostileStack]:
    """One running stack for the whole corpus: each import is independent, and provisioning costs seconds."""
    with pytest.MonkeyPatch.context() as patch, Emulator(LocalStack(), act_as=acting_with) as emulator:
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        for name, value in emulator.process_environment().items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        aws.forget_clients()
        local, lambdas = emulator.stack, emulator.functions
        hostile = HostileStack(local, lambdas, local.physical_name("WatchedBucket"))
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

        patch.setattr(retrier_decl, "time", SimpleNamespace(sleep=lambda seconds: None))
        invoke = lambdas.invoke

        def invoke_and_note_errors(function: str, event: Any) -> tuple[str, bool]:
            inspecting = lambdas.logical_id(function) in INSPECTING_FUNCTIONS
            if inspecting:
                hostile.memory.enter()
            try:
                payload, failed = invoke(function, event)
            finally:
                if inspecting:
                    hostile.memory.leave()
            if failed:
                hostile.function_errors.append(str(json.loads(payload).get("errorType")))
            return payload, failed

        patch.setattr(lambdas, "invoke", invoke_and_note_errors)
        for module in ("diskport.pipeline.fetch", "diskport.pipeline.convert"):
            original = sys.modules[module].open_disk if module in sys.modules else None
            if original is None:
                __import__(module)
                original = sys.modules[module].open_disk

            def noting_open_disk(source: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                hostile.engine_sources.append(type(source).__name__)
                return _original(source, *args, **kwargs)

            patch.setattr(f"{module}.open_disk", noting_open_disk)
        yield hostile


def upload(hostile: HostileStack, file: HostileFile) -> str:
    key = f"hostile/{file.path.name}"
    boto3.client("s3").put_object(Bucket=hostile.bucket, Key=key, Body=file.path.read_bytes())
    return key


def import_hostile(hostile: HostileStack, file: HostileFile, key: str) -> tuple[dict[str, Any], float, int]:
    """Import the uploaded file as a client would: the job, the seconds it took, and the peak memory traced while
    Fetch and Convert ran (the emulated S3, EBS and DynamoDB they call included)."""
    request = {"name": "hostile", "image_url": f"{hostile.bucket}:{key}", "min_disk": file.min_disk}
    create = hostile.lambdas.handler("CreateImageJobFunction")
    route = next(route for route in hostile.stack.api_routes() if route.method == "POST")
    event = http_api_event(route, path=route.path, body=json.dumps(request), headers={}, account_id="0123456789ab")
    hostile.memory.peak = 0
    started = time.monotonic()
    answer = create(event, hostile.lambdas.context("CreateImageJobFunction"))
    assert answer["statusCode"] == 200, answer
    job_id = json.loads(answer["body"])["job_id"]
    machine = hostile.stack.arn("ImportDataImageStateMachine").replace(":stateMachine:", ":execution:")
    step_functions = boto3.client("stepfunctions")
    while step_functions.describe_execution(executionArn=f"{machine}:{job_id}")["status"] == "RUNNING":
        assert time.monotonic() - started < IMPORT_TIMEOUT_SECONDS, f"{file.name} still importing"
        time.sleep(0.02)
    seconds = time.monotonic() - started
    peak = hostile.memory.peak
    item = boto3.resource("dynamodb").Table(hostile.stack.physical_name("JobsTable")).get_item(Key={"job_id": job_id})
    return dict(item["Item"]), seconds, peak


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(index, id=name, marks=[] if name in IN_CI else [pytest.mark.slow])
        for index, name in enumerate(CorpusBuilder.recipe_names())
    ],
)
def test_a_hostile_file_ends_fail_with_its_reason_and_touches_nothing_else(
    index: int, corpus: list[HostileFile], hostile_stack: HostileStack, report: ReliabilityReport
) -> None:
    file = corpus[index]
    hostile_stack.engine_sources.clear()
    hostile_stack.function_errors.clear()
    OPENED.paths.clear()

    # Given the crafted file in the watched bucket
    key = upload(hostile_stack, file)

    # When it is imported, with every file open recorded
    OPENED.recording = True
    try:
        job, seconds, peak = import_hostile(hostile_stack, file, key)
    finally:
        OPENED.recording = False

    # Then the job failed with the file's own code and a reason that names the problem
    assert job["status"] == "FAIL", job
    assert job["error_code"] == file.code, job["fail_reason"]
    for word in file.words:
        assert word in job["fail_reason"], job["fail_reason"]
    # And no function failed with anything but the project's own errors
    assert set(hostile_stack.function_errors) <= DISKPORT_ERRORS, hostile_stack.function_errors
    # And the engine only ever read the S3 object
    assert set(hostile_stack.engine_sources) <= {S3ObjectSource.__name__}
    # And no file was opened but Python code, and none that an image names or the corpus holds
    # (linecache names code without a file "<unknown>" or "<string>": nothing is opened for those)
    opened = [str(Path(path).resolve()) for path in OPENED.paths if not path.startswith("<")]
    assert not [path for path in opened if any(name in path for name in FORBIDDEN_NAMES)], opened
    assert not [path for path in opened if path.startswith(str(file.path.parent))], opened
    assert [path for path in opened if not path.startswith(tuple(code_locations()))] == []
    # And nothing of the import is left: its image is killed, no snapshot remains, no work file
    image_id = job.get("image_id")
    if image_id:
        images = boto3.resource("dynamodb").Table(hostile_stack.stack.physical_name("ImagesTable"))
        assert images.get_item(Key={"id": image_id})["Item"]["status"] == "killed"
    tagged = boto3.client("ec2").describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:diskport:job-id", "Values": [job["job_id"]]}]
    )["Snapshots"]
    assert tagged == []
    work = boto3.client("s3").list_objects_v2(
        Bucket=hostile_stack.stack.physical_name("WorkBucket"), Prefix=f"imports/{job['job_id']}/"
    )
    assert work.get("KeyCount", 0) == 0
    # And memory and time stayed bounded
    assert peak < MEMORY_BOUND_BYTES, f"peak {peak} bytes"
    assert seconds < TIME_BOUND_SECONDS
    report.add(
        "hostile",
        file=file.name,
        size=file.path.stat().st_size,
        error_code=job["error_code"],
        refused_in="convert" if file.refused_in_convert else "fetch",
        seconds=round(seconds, 3),
        peak_mib=round(peak / MIB, 2),
        files_opened=len(opened),
        reason=job["fail_reason"],
    )
