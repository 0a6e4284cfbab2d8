"""Function instances are forked from a fork server: each with its own environment and start-up variables, reaped
when idle, reported when they die, and gone with local mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diskport_emulator import LocalStack
from diskport_emulator.lambda_runtime.forkserver import PRELOADED_MODULES
from diskport_emulator.lambda_runtime.instances import FunctionInstances

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 5
Resources:
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: probe/
      Environment:
        Variables:
          ONLY_PLAIN: plain
  TunedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: probe/
      Environment:
        Variables:
          GLIBC_TUNABLES: glibc.malloc.trim_threshold=67108864
"""

PROBE = """
    import os
    from pathlib import Path
    def lambda_handler(event, context):
        if event.get("exit") is not None:
            os._exit(event["exit"])
        started_with = dict(
            entry.split("=", 1) for entry in Path("/proc/self/environ").read_text().split("\\0") if "=" in entry
        )
        return {
            "pid": os.getpid(),
            "parent": os.getppid(),
            "only_plain": os.environ.get("ONLY_PLAIN"),
            "tunables_at_start": started_with.get("GLIBC_TUNABLES"),
            "function_at_start": started_with.get("AWS_LAMBDA_FUNCTION_NAME"),
        }
"""


def answer_of(functions: FunctionInstances, name: str, event: dict[str, object] | None = None) -> dict[str, object]:
    payload, errored = functions.invoke(name, event or {})
    assert not errored, payload
    answer: dict[str, object] = json.loads(payload)
    return answer


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return status != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def template(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "app.py").write_text(textwrap.dedent(PROBE))
    return tmp_path / "template.yaml"


@pytest.fixture
def functions(template: Path) -> Iterator[FunctionInstances]:
    instances = FunctionInstances(LocalStack(template_path=template), concurrency=2, idle_seconds=60)
    yield instances
    instances.stop()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_instances_of_functions_with_the_same_start_up_variables_are_forks_of_one_process(
    functions: FunctionInstances,
) -> None:
    plain = answer_of(functions, "PlainFunction")
    # the fork server was started with what every function shares, not with one function's own variables
    assert plain["only_plain"] == "plain"
    assert plain["function_at_start"] is None
    assert plain["parent"] != os.getpid()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_function_whose_environment_sets_malloc_tunables_runs_in_a_process_started_with_them(
    functions: FunctionInstances,
) -> None:
    tuned = answer_of(functions, "TunedFunction")
    plain = answer_of(functions, "PlainFunction")
    # glibc reads GLIBC_TUNABLES only when a process starts: the tuned function's fork server started with them
    assert tuned["tunables_at_start"] == "glibc.malloc.trim_threshold=67108864"
    assert plain["tunables_at_start"] is None
    assert tuned["parent"] != plain["parent"]
    assert tuned["only_plain"] is None


def test_an_instance_that_exits_answers_runtime_exit_error_with_its_status(functions: FunctionInstances) -> None:
    payload, errored = functions.invoke("PlainFunction", {"exit": 3})
    assert errored
    assert json.loads(payload)["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with status 3" in json.loads(payload)["errorMessage"]
    assert answer_of(functions, "PlainFunction")["only_plain"] == "plain"  # a fresh instance answers


def test_an_instance_idle_longer_than_the_idle_time_is_stopped_and_the_next_call_starts_another(
    template: Path,
) -> None:
    functions = FunctionInstances(LocalStack(template_path=template), concurrency=2, idle_seconds=0.5)
    try:
        first = answer_of(functions, "PlainFunction")
        assert gone_within(int(str(first["pid"])), 10)
        second = answer_of(functions, "PlainFunction")
        assert second["pid"] != first["pid"]
    finally:
        functions.stop()


def test_an_instance_in_use_is_kept_while_calls_come_sooner_than_the_idle_time(template: Path) -> None:
    functions = FunctionInstances(LocalStack(template_path=template), concurrency=2, idle_seconds=3)
    try:
        pids = set()
        for _ in range(4):
            pids.add(answer_of(functions, "PlainFunction")["pid"])
            time.sleep(1)
        assert len(pids) == 1
    finally:
        functions.stop()


def test_stopping_the_runtime_ends_its_instances_and_fork_servers(functions: FunctionInstances) -> None:
    plain = answer_of(functions, "PlainFunction")
    tuned = answer_of(functions, "TunedFunction")
    functions.stop()
    for pid in (plain["pid"], plain["parent"], tuned["pid"], tuned["parent"]):
        assert gone_within(int(str(pid)), 10), pid


RUNTIME_KILLED = """
import json, sys
from pathlib import Path
from diskport_emulator import LocalStack
from diskport_emulator.lambda_runtime.instances import FunctionInstances
functions = FunctionInstances(LocalStack(template_path=Path(sys.argv[1])), concurrency=1)
print(functions.invoke("PlainFunction", {})[0], flush=True)
sys.stdin.read()
"""


def test_instances_and_their_fork_server_end_when_local_modes_process_is_killed(template: Path) -> None:
    # Given a process running an instance
    runtime = subprocess.Popen(
        [sys.executable, "-c", RUNTIME_KILLED, str(template)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert runtime.stdout is not None
    answer = json.loads(runtime.stdout.readline())
    # When it is killed, without a chance to stop anything
    runtime.send_signal(signal.SIGKILL)
    runtime.wait()
    # Then its fork server and the instance end too
    assert gone_within(int(answer["parent"]), 10)
    assert gone_within(int(answer["pid"]), 10)


READS_ON_IMPORT = """
import collections.abc, importlib, json, os, sys
read = set()
class Recording(collections.abc.MutableMapping):
    def __init__(self, environ): self.environ = environ
    def __getitem__(self, name): read.add(name); return self.environ[name]
    def __setitem__(self, name, value): self.environ[name] = value
    def __delitem__(self, name): del self.environ[name]
    def __iter__(self): read.add("*"); return iter(self.environ)
    def __len__(self): return len(self.environ)
os.environ = Recording(os.environ)
from diskport_emulator.lambda_runtime.forkserver import preload
from diskport_local.preloads import PRELOADED_SERVICE_MODULES
preload(PRELOADED_SERVICE_MODULES)
read.add("diskport.observability imported") if "diskport.observability" in sys.modules else None
print(json.dumps(sorted(read)))
"""


def test_the_modules_the_fork_server_preloads_read_none_of_a_functions_own_variables_on_import() -> None:
    # Given the variables whose value differs between the template's functions (their own, their names, roles)
    functions = FunctionInstances(LocalStack(), base_environment=dict)
    environments = [functions.environment(logical_id) for logical_id in functions.logical_ids]
    names = {name for environment in environments for name in environment}
    own = {name for name in names if len({environment.get(name) for environment in environments}) > 1}
    own |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_FUNCTION_NAME"}
    assert {"JOBS_TABLE", "AWS_LAMBDA_FUNCTION_NAME", "GLIBC_TUNABLES"} & own
    # When the fork server preloads its modules
    read = json.loads(
        subprocess.run([sys.executable, "-c", READS_ON_IMPORT], capture_output=True, text=True, check=True).stdout
    )
    # Then none of those was read (so a fork sees what a process started with the function's environment saw)
    assert "*" not in read
    assert "diskport.observability imported" not in read  # its logger, tracer and metrics read the environment
    assert not set(read) & own, set(read) & own
    assert "boto3" in PRELOADED_MODULES


RUNTIME_INTERRUPTED = """
import json, signal, sys
from pathlib import Path
from diskport_emulator import LocalStack
from diskport_emulator.lambda_runtime.instances import FunctionInstances
signal.signal(signal.SIGINT, lambda _signal, _frame: print(json.dumps("interrupted"), flush=True))
functions = FunctionInstances(LocalStack(template_path=Path(sys.argv[1])), concurrency=1)
print(functions.invoke("PlainFunction", {})[0], flush=True)
sys.stdin.readline()
print(functions.invoke("PlainFunction", {})[0], flush=True)
functions.stop()
"""


def test_the_terminals_ctrl_c_reaches_local_mode_and_not_its_instances(template: Path) -> None:
    # Given local mode in a process group of its own, as a terminal runs it, with a warm instance
    runtime = subprocess.Popen(
        [sys.executable, "-c", RUNTIME_INTERRUPTED, str(template)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    assert runtime.stdin is not None and runtime.stdout is not None
    first = json.loads(runtime.stdout.readline())
    # When Ctrl-C signals the terminal's foreground process group
    os.killpg(runtime.pid, signal.SIGINT)
    assert json.loads(runtime.stdout.readline()) == "interrupted"
    runtime.stdin.write("\n")
    runtime.stdin.flush()
    # Then local mode handles it, and the same instance answers the next call
    second = json.loads(runtime.stdout.readline())
    assert runtime.wait(timeout=30) == 0
    assert second["pid"] == first["pid"]
