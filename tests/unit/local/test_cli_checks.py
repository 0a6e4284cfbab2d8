"""What the CLI refuses before it uploads or writes anything, and how it presents itself."""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from diskport_emulator import LocalStack
from diskport_emulator.event_sources.http_front import ApiFront, FrontServer
from diskport_local.cli import build_parser, main


@pytest.fixture
def nothing_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mode's ports with nothing behind them: a command that reaches the network fails differently."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    monkeypatch.setenv("LOCAL_API_PORT", port)
    monkeypatch.setenv("LOCAL_AWS_PORT", port)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def _refusal(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    assert main(list(arguments)) == 1
    return capsys.readouterr().err


def test_an_s3_url_gets_the_bucket_key_form_as_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    error = _refusal(capsys, "import", "s3://images/disks/data1.qcow2", "--name", "d", "--min-disk", "40")
    assert "not as an s3:// URL: images:disks/data1.qcow2" in error


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--name", "a/b", "IMG.0003"),
        ("--min-disk", "30", "IMG.0055"),
        ("--tag", "bad tag=x", "IMG.0115"),
        ("--cmk-id", "not-a-key", "IMG.0095"),
    ],
)
def test_a_request_the_api_would_refuse_is_refused_before_the_upload(
    nothing_listening: None, disk: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, code: str
) -> None:
    # Given a local file and nothing listening (an upload would fail with "Nothing answers")
    arguments = {"--name": "data-1", "--min-disk": "40", option: value}
    # When the request breaks an API rule, then its IMS code is the answer: nothing was sent
    error = _refusal(capsys, "import", str(disk), *[item for pair in arguments.items() for item in pair])
    assert f"diskport: {code}:" in error


def test_a_gzipped_file_is_refused_before_the_upload(
    nothing_listening: None, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = disk.with_name("disk.qcow2.gz")
    packed.write_bytes(gzip.compress(disk.read_bytes()))
    error = _refusal(capsys, "import", str(packed), "--name", "d", "--min-disk", "40")
    assert "IMG.0072: This is a gzip file, not a disk image: decompress it first" in error


def test_a_disk_larger_than_min_disk_is_refused_before_the_upload(
    nothing_listening: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    large = tmp_path / "large.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(large), "50G"], check=True, capture_output=True)
    error = _refusal(capsys, "import", str(large), "--name", "d", "--min-disk", "40")
    assert "IMG.0055" in error and "set min_disk to at least 50" in error


def test_export_refuses_to_overwrite_a_file_without_force(
    nothing_listening: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "disk.raw"
    existing.write_bytes(b"keep me")
    error = _refusal(capsys, "export", "some-image", str(existing))
    assert "exists: name another file, or add --force" in error
    assert existing.read_bytes() == b"keep me"


def test_export_into_a_missing_directory_is_a_clear_error_that_creates_nothing(
    nothing_listening: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _refusal(capsys, "export", "some-image", str(tmp_path / "missing" / "disk.raw"))
    assert f"The directory {tmp_path / 'missing'} does not exist" in error
    assert list(tmp_path.iterdir()) == []


def test_an_api_refusal_of_a_valid_request_shows_its_ims_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refusing(function: str, event: dict[str, Any]) -> tuple[str, bool]:
        body = {"error": {"code": "IMG.0060", "message": "The project has 10 imports under way."}}
        return json.dumps({"statusCode": 429, "body": json.dumps(body)}), False

    server = FrontServer(ApiFront(LocalStack().api_routes(), refusing), "127.0.0.1", 0)
    server.start()
    try:
        monkeypatch.setenv("LOCAL_API_PORT", server.url.rpartition(":")[2])
        error = _refusal(capsys, "import", "images:disk.qcow2", "--name", "x", "--min-disk", "40")
    finally:
        server.stop()
    assert "IMG.0060: The project has 10 imports under way." in error


def _commands(
    parser: argparse.ArgumentParser | None = None, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command and, for command groups (`image`, `access-key`), every command of the group."""
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield f"{prefix}{name}", command
                yield from _commands(command, f"{prefix}{name} ")


def test_every_option_and_argument_of_every_command_says_what_it_is() -> None:
    for name, command in _commands():
        for action in command._actions:
            assert action.help, f"diskport {name} {action.option_strings or action.dest} has no help text"


def test_every_command_shows_an_example_of_its_use() -> None:
    for name, command in _commands():
        assert f"example:\n  diskport {name}" in (command.epilog or ""), name


def test_aws_endpoint_is_offered_only_by_the_commands_that_reach_aws() -> None:
    offering = {name for name, command in _commands() if "--aws-endpoint" in command._option_string_actions}
    assert offering == {"import", "export", "sam-env", "smoke"}


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"diskport {version('diskport')}"
