"""The layer's AWS SDK is whole: a botocore in the layer comes with the boto3 released for it (scripts/check_layer.py,
which `make build` runs on the built layer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from diskport_emulator.template import PROJECT_ROOT

CHECK_LAYER = PROJECT_ROOT / "scripts" / "check_layer.py"


def layer_with(tmp_path: Path, **dist_infos: str) -> Path:
    for name, metadata in dist_infos.items():
        folder = tmp_path / f"{name}.dist-info"
        folder.mkdir()
        (folder / "METADATA").write_text(metadata)
    return tmp_path


def check(layer: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK_LAYER), str(layer)], capture_output=True, text=True, check=False)


def test_a_layer_with_botocore_but_no_boto3_is_refused(tmp_path: Path) -> None:
    run = check(layer_with(tmp_path, **{"botocore-1.40.1": "Name: botocore\n"}))
    assert run.returncode == 1
    assert "botocore but no boto3" in run.stderr


def test_a_layer_whose_boto3_wants_another_botocore_is_refused(tmp_path: Path) -> None:
    boto3 = "Name: boto3\nRequires-Dist: botocore (<1.41.0,>=1.40.5)\nRequires-Dist: jmespath (<2.0.0,>=0.7.1)\n"
    run = check(layer_with(tmp_path, **{"botocore-1.39.0": "Name: botocore\n", "boto3-1.40.5": boto3}))
    assert run.returncode == 1
    assert "needs botocore <1.41.0,>=1.40.5, the layer has 1.39.0" in run.stderr


def test_a_layer_with_a_matching_boto3_passes_the_sdk_check(tmp_path: Path) -> None:
    boto3 = "Name: boto3\nRequires-Dist: botocore<1.41.0,>=1.40.5\n"
    run = check(layer_with(tmp_path, **{"botocore-1.40.9": "Name: botocore\n", "boto3-1.40.5": boto3}))
    assert run.returncode == 0
    assert "botocore" not in run.stderr
