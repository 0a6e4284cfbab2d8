"""After `sam build`: the layer's AWS SDK is whole.

    python scripts/check_layer.py .aws-sam/build/DiskportLayer/python

A layer's packages come before the runtime's on sys.path, so a botocore in the layer (aws-xray-sdk pulls one in)
must come with the boto3 that was released for it, or the runtime's boto3 would run on a botocore it was never
tested with. Exits non-zero, saying why, when it is not so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version


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
    print(f"{layer}: the AWS SDK is whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
