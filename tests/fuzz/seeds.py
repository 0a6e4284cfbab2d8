"""Seed images for the parser fuzzers: one small valid file per format and sub-format the engine reads.

Both fuzzers (hypothesis in CI, atheris on demand) start from these files, so their mutations land in real
headers and tables rather than in noise a parser refuses at its first byte.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

KIB = 1024
BLOCK = 512 * KIB
SEED_RECIPES = {
    "qcow2-v3": ("qcow2", ("-o", "cluster_size=65536")),
    "qcow2-v2": ("qcow2", ("-o", "compat=0.10")),
    "qcow2-zlib": ("qcow2", ("-c",)),
    "vmdk-sparse": ("vmdk", ()),
    "vmdk-stream": ("vmdk", ("-o", "subformat=streamOptimized")),
    "vhd-dynamic": ("vpc", ("-o", "subformat=dynamic")),
    "vhd-fixed": ("vpc", ("-o", "subformat=fixed")),
    "vhdx-dynamic": ("vhdx", ("-o", "subformat=dynamic")),
    "vdi-dynamic": ("vdi", ()),
}


def write_seed_disk(path: Path) -> Path:
    """A 1 MiB raw disk with a little data in each half."""
    with path.open("wb") as file:
        file.truncate(2 * BLOCK)
        for block in range(2):
            file.seek(block * BLOCK + 1000)
            file.write(bytes(range(256)) * 8)
    return path


def build_seeds(folder: Path) -> dict[str, bytes]:
    """Each seed image's bytes, by name."""
    disk = write_seed_disk(folder / "seed.raw")
    seeds = {}
    for name, (qemu_format, options) in SEED_RECIPES.items():
        path = folder / f"{name}.img"
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", qemu_format, *options, str(disk), str(path)],
            check=True,
            capture_output=True,
        )
        seeds[name] = path.read_bytes()
    return seeds


class BytesSource:
    """An image held in memory (fuzzers only: the engine itself never holds a file)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("negative offset or length")
        return self._data[offset : offset + length]
