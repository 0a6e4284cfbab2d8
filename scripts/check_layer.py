"""After `sam build`: the layer's AWS SDK is whole, and it carries the compiled SHA-256 module, which Lambda's
python3.13 runtime can load.

    python scripts/check_layer.py .aws-sam/build/DiskportLayer/python

A layer's packages come before the runtime's on sys.path, so a botocore in the layer (aws-xray-sdk pulls one in)
must come with the boto3 that was released for it, or the runtime's boto3 would run on a botocore it was never
tested with. The module must need no glibc newer than the runtime's (Amazon Linux 2023: 2.34) and must hash as
hashlib does. Exits non-zero, saying why, when any is not so; on a machine that is not x86-64 the layer has no
module to check.
"""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

RUNTIME_GLIBC = (2, 34)


def sdk_fault(layer: Path) -> str | None:
    """Why the layer's boto3 and botocore do not belong together, or None when they do (or neither is there)."""
    versions = {}
    for name in ("boto3", "botocore"):
        found = sorted(layer.glob(f"{name}-*.dist-info"))
        versions[name] = found[0] if found else None
    if versions["botocore"] is None:
        return None
    if versions["boto3"] is None:
        return "the layer has botocore but no boto3: the runtime's boto3 would run on the layer's botocore"
    botocore_version = Version(versions["botocore"].name.removeprefix("botocore-").removesuffix(".dist-info"))
    metadata = (versions["boto3"] / "METADATA").read_text()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.removeprefix("Requires-Dist:").strip())
            if requirement.name == "botocore" and botocore_version not in requirement.specifier:
                return f"the layer's boto3 needs botocore {requirement.specifier}, the layer has {botocore_version}"
    return None


def main() -> int:
    layer = Path(sys.argv[1])
    fault = sdk_fault(layer)
    if fault is not None:
        print(f"{layer}: {fault}", file=sys.stderr)
        return 1
    if platform.machine() != "x86_64":
        print("not x86-64: the layer hashes with hashlib")
        return 0
    modules = sorted(layer.glob("diskport/engine/_multibuffer_sha256.cpython-313-*.so"))
    if not modules:
        print(f"{layer}: the layer has no compiled _multibuffer_sha256 for Python 3.13", file=sys.stderr)
        return 1
    module_path = modules[0]
    symbols = subprocess.run(["objdump", "-T", module_path], check=True, capture_output=True, text=True).stdout
    needed = {tuple(int(part) for part in found.split(".")) for found in re.findall(r"GLIBC_([0-9.]+)", symbols)}
    too_new = sorted(version for version in needed if version[:2] > RUNTIME_GLIBC)
    if too_new:
        print(f"{module_path.name} needs glibc {too_new[-1]}, newer than the runtime's", file=sys.stderr)
        return 1
    specification = importlib.util.spec_from_file_location("_multibuffer_sha256", module_path)
    assert specification is not None and specification.loader is not None
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    if module.supported():
        messages = [bytes([number]) * 524_288 for number in range(16)]
        if module.digests(messages) != [hashlib.sha256(message).digest() for message in messages]:
            print(f"{module_path.name} computes wrong digests", file=sys.stderr)
            return 1
    print(f"{module_path.relative_to(layer)}: loads, needs glibc <= {'.'.join(map(str, RUNTIME_GLIBC))}, hashes right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
