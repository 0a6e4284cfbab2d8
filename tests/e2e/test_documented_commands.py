"""Every command block of README.md and docs/ that can run against local mode runs, and succeeds.

Blocks are the ```sh fences. What cannot run here is named below with the reason (a deployed stack, Docker, the
test suite itself, long benchmarks); everything else runs as written, in a fresh directory, with three
substitutions a reader makes too: local mode's ports and project id for the documented defaults, a scratch
directory for /tmp, and the newest image or job for `<image id>` and `<job id>`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import PROJECT_ID, LocalModeProcess

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"

# A line matching one of these does not run here; a block holding one of BLOCK_SKIPS does not run at all.
LINE_SKIPS = {
    r"^make (run|test|test-fast|lint|bench|load|fuzz|demo|setup)\b": "the suite, benchmarks or local mode itself",
    r"^make (build|deploy)\b": "builds or deploys to AWS",
    r"^(\.venv/bin/)?diskport serve\b": "local mode itself, already running",
    r"^(\.venv/bin/)?sam (local|deploy|build)\b": "needs Docker or AWS",
    r"schemathesis run": "the API fuzzing run, tests/e2e/test_openapi_fuzzing.py",
    r"tests/reliability --run-slow|reliability_report": "the long reliability run",
}
BLOCK_SKIPS = {
    r"^export DISKPORT_ENDPOINT=": "a deployed stack",
    r"\$WATCHED_BUCKET|\$UPLOAD_DEAD_LETTER_QUEUE_ARN": "a deployed stack's resources",
    r"--env-vars": "sam local (Docker)",
    r"^aws configure\b|aws cloudformation|--endpoint (https://|\$)|amazonaws\.com": "a deployed stack",
    r"<[A-Z][A-Za-z]+>": "a deployed stack's outputs (<ApiEndpoint>, <WatchedBucketName>)",
    r"diskport access-key ": "local mode with LOCAL_AUTH=aksk (tests/e2e/test_access_keys.py runs these)",
}


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    commands: list[str]


def _blocks() -> list[Block]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text()
        for fence in re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M):
            joined = re.sub(r"\\\n\s*", " ", fence.group(1))
            commands = [line.strip() for line in joined.splitlines() if line.strip()]
            blocks.append(Block(document.relative_to(ROOT).as_posix(), text[: fence.start()].count("\n") + 1, commands))
    return blocks


BLOCKS = _blocks()


def _skipped(patterns: dict[str, str], command: str) -> str | None:
    return next((reason for pattern, reason in patterns.items() if re.search(pattern, command)), None)


def _newest(local_mode: LocalModeProcess, path: str, field: str, key: str) -> str:
    items = local_mode.call("GET", path).body[field]
    return str(items[0][key]) if items else "none-yet"


def test_the_documents_hold_command_blocks_that_run() -> None:
    runnable = [block for block in BLOCKS if not any(_skipped(BLOCK_SKIPS, c) for c in block.commands)]
    assert len(runnable) >= 4, [f"{block.document}:{block.line}" for block in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{block.document}:{block.line}" for block in BLOCKS])
def test_a_documented_command_block_runs_against_local_mode(
    local_mode: LocalModeProcess, block: Block, tmp_path: Path
) -> None:
    reasons = {_skipped(BLOCK_SKIPS, command) for command in block.commands} - {None}
    if reasons:
        pytest.skip(f"cannot run here: {', '.join(sorted(r for r in reasons if r))}")
    commands = [command for command in block.commands if _skipped(LINE_SKIPS, command) is None]
    if not commands:
        pytest.skip("every line needs something local mode is not: " + block.commands[0])
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    environment = {
        **local_mode.environment,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Whatever a block asks of AWS goes to local mode's emulator, never anywhere else.
        "AWS_ENDPOINT_URL": local_mode.aws_url,
    }
    exported: list[str] = []  # a block's `export` lines hold for the lines after them, as in one shell
    for command in commands:
        command = (
            command.replace("http://127.0.0.1:3000", local_mode.api_url)
            .replace("http://127.0.0.1:5000", local_mode.aws_url)
            .replace(DEFAULT_PROJECT_ID, PROJECT_ID)
            .replace("/tmp/", f"{tmp_path}/")
            .replace("<image id>", _newest(local_mode, "/v2/cloudimages", "images", "id"))
            .replace("<job id>", _newest(local_mode, "/v1/cloudimages/jobs", "jobs", "job_id"))
        )
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", "\n".join([*exported, command])],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, f"{block.document}:{block.line}: {command}\n{run.stdout}\n{run.stderr}"
        if command.startswith("export "):
            exported.append(command)
