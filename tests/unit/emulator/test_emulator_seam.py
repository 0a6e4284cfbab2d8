"""The AWS emulator's one interface: what it is built against, who may reach past it, and the strict reads it adds."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from diskport_emulator import MOTO_VERSION, UnsupportedMotoError, check_moto_version, install_strict_services
from diskport_emulator.template import PROJECT_ROOT

EMULATOR = PROJECT_ROOT / "src" / "diskport_emulator"
PRODUCT = PROJECT_ROOT / "src" / "diskport_local"
# The fixtures every suite builds its stacks with, and local mode's own process.
SHARED_BY = [PROJECT_ROOT / "tests" / "conftest.py", *sorted((PROJECT_ROOT / "tests").glob("*/conftest.py"))]


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_the_emulator_runs_on_the_moto_it_is_built_against() -> None:
    check_moto_version()  # the pinned moto
    assert MOTO_VERSION == "5.2.5"


def test_another_moto_is_refused_until_the_emulator_is_checked_against_it() -> None:
    with pytest.raises(UnsupportedMotoError, match=r"built against moto 5\.2\.5, not 5\.3\.0"):
        check_moto_version("5.3.0")


def test_the_emulator_imports_nothing_of_the_service() -> None:
    for path in EMULATOR.rglob("*.py"):
        service = [name for name in imported_modules(path) if name.split(".")[0] in ("diskport", "diskport_local")]
        assert service == [], f"{path.relative_to(PROJECT_ROOT)} imports {service}"


def test_local_mode_and_the_shared_fixtures_reach_the_emulator_only_through_its_interface() -> None:
    for path in [*PRODUCT.rglob("*.py"), *SHARED_BY]:
        inside = [name for name in imported_modules(path) if name.startswith("diskport_emulator.")]
        assert inside == [], f"{path.relative_to(PROJECT_ROOT)} imports {inside}: use `from diskport_emulator import`"


def test_a_ranged_get_answers_exactly_its_range_and_a_plain_get_the_whole_object() -> None:
    install_strict_services()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ranges")
        data = os.urandom(12 * 1024 * 1024)  # beyond moto's in-memory buffer: the object lives in a file
        s3.put_object(Bucket="ranges", Key="object", Body=data)

        ranged = s3.get_object(Bucket="ranges", Key="object", Range="bytes=1000-2000999")
        assert (ranged["ContentRange"], ranged["Body"].read()) == (
            f"bytes 1000-2000999/{len(data)}",
            data[1000:2001000],
        )
        assert s3.get_object(Bucket="ranges", Key="object", Range="bytes=-10")["Body"].read() == data[-10:]
        assert s3.get_object(Bucket="ranges", Key="object")["Body"].read() == data
