"""The shared package's layers: imports point down only, and only `stores/` talks to AWS.

Read from the source with `ast`, so a layering mistake fails here before it becomes a cycle at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "layers" / "diskport" / "diskport"

# Lower ranks are imported by higher ones, never the other way round. `api` and `pipeline` are the two entry
# layers the functions call: neither imports the other.
RANKS = {
    "engine": 0,
    "settings": 1,
    "errors": 1,
    "observability": 1,
    "stores": 2,
    "domain": 3,
    "api": 4,
    "pipeline": 4,
}
AWS_SDKS = {"boto3", "botocore", "aioboto3", "aiobotocore"}


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported(path: Path) -> list[str]:
    """Every module the file imports, type-checking imports included: they are dependencies too."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_module_belongs_to_a_known_layer() -> None:
    assert {_layer_of(path) for path in _modules()} - {"__init__"} <= set(RANKS)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_down_only(path: Path) -> None:
    layer = _layer_of(path)
    if layer == "__init__":
        return
    upward = []
    for name in _imported(path):
        parts = name.split(".")
        if parts[0] != "diskport" or len(parts) < 2 or parts[1] not in RANKS:
            continue
        target = parts[1]
        if target == layer:
            continue
        if RANKS[target] >= RANKS[layer]:
            upward.append(name)
    assert not upward, f"{path.relative_to(PACKAGE)} imports from its own level or above: {sorted(set(upward))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_the_stores_use_the_aws_sdk(path: Path) -> None:
    if _layer_of(path) == "stores":
        return
    sdk = sorted({name for name in _imported(path) if name.split(".")[0] in AWS_SDKS})
    assert not sdk, f"{path.relative_to(PACKAGE)} uses the AWS SDK ({sdk}); AWS calls belong in stores/"


def _client_factories(path: Path) -> list[str]:
    """Calls that make an AWS client: `boto3.client(...)`, `Session().client(...)`, `.resource(...)`, and the
    service's own factories in `stores/aws.py` reached from elsewhere."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = ast.unparse(node.func.value)
        if node.func.attr in ("client", "resource") and ("boto3" in owner or "Session" in owner or owner == "aws"):
            found.append(ast.unparse(node)[:80])
        if owner == "aws" and node.func.attr == "dynamodb_table":
            found.append(ast.unparse(node)[:80])
    return found


# The service: what runs in Lambda. (Local mode's emulator stands in for AWS, and the CLI is a client of the
# service and of AWS; neither runs in the service.)
SERVICE_CODE = [ROOT / "functions", ROOT / "layers"]


def test_no_module_outside_the_stores_creates_an_aws_client() -> None:
    offenders = {}
    for folder in SERVICE_CODE:
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts or ".aws-sam" in path.parts:
                continue
            if path.is_relative_to(PACKAGE / "stores"):
                continue
            if calls := _client_factories(path):
                offenders[str(path.relative_to(ROOT))] = calls
    assert not offenders, f"AWS clients made outside stores/: {offenders}"
