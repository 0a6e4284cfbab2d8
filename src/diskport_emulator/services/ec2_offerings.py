"""EC2's instance-type offerings, read when first asked for instead of held by every emulator from its start.

moto reads the offerings of every instance type in every region and zone when `moto.ec2` is imported (150,000
records, ~50 MiB of this process), for DescribeInstanceTypeOfferings and for the placement checks of RunInstances
and spot requests, none of which this stack calls; the EC2 backend itself is there for EBS snapshots. `install()`
drops the records and puts in their place a mapping that reads them again, as moto did, on first use, so those
calls answer as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

_MODULES = ("moto.ec2.models.instance_types", "moto.ec2.models.instances", "moto.ec2.models.spot_requests")


class OfferingsReadOnFirstUse(Mapping[str, Any]):
    """moto's `INSTANCE_TYPE_OFFERINGS` (location type -> region -> offerings), read from its files on first use."""

    def __init__(self) -> None:
        self._offerings: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        with self._lock:
            if self._offerings is None:
                self._offerings = read_offerings()
            return self._offerings

    def __getitem__(self, location_type: str) -> Any:
        return self._read()[location_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    @property
    def read(self) -> bool:
        return self._offerings is not None


def read_offerings() -> dict[str, Any]:
    """What moto's `instance_types` module reads on import, read the same way."""
    import os
    import pathlib

    from moto.ec2.models import instance_types
    from moto.utilities.utils import load_resource

    root = pathlib.Path(instance_types.__file__).parent.parent
    offerings_path = "resources/instance_type_offerings"
    offerings: dict[str, Any] = {}
    for location_type in os.listdir(root / offerings_path):
        offerings[location_type] = {}
        for data_file in os.listdir(root / offerings_path / location_type):
            records = load_resource(os.path.join("ec2", offerings_path, location_type, data_file))
            for record in records:
                record["LocationType"] = location_type
            offerings[location_type][data_file.split(".")[0]] = records
    return offerings


def install() -> None:
    """Replace moto's offerings with ones read on first use (idempotent)."""
    import importlib

    modules = [importlib.import_module(name) for name in _MODULES]
    if isinstance(modules[0].INSTANCE_TYPE_OFFERINGS, OfferingsReadOnFirstUse):
        return
    loaded = modules[0].INSTANCE_TYPE_OFFERINGS
    offerings = OfferingsReadOnFirstUse()
    for module in modules:
        setattr(module, "INSTANCE_TYPE_OFFERINGS", offerings)  # noqa: B010 - moto's own global, looked up per call
    loaded.clear()
