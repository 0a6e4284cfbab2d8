"""Build disk images with qemu-img for the engine's tests and bench, and the raw disk qemu-img reads from each."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

KIB = 1024
MIB = 1024 * KIB
# Not a multiple of 512 KiB, nor of any format's block size: the last block is partial everywhere.
PATTERN_SIZE = 13 * MIB + 200 * KIB + 1536


@dataclass(frozen=True)
class ImageCase:
    """One image file, the format and sub-format the engine must report, and qemu-img's reading of it."""

    name: str
    path: Path
    format: str
    subformat: str
    oracle: Path  # qemu-img convert -O raw of `path`


@dataclass(frozen=True)
class Recipe:
    name: str
    format: str
    subformat: str
    convert_options: tuple[str, ...]
    # qemu-io commands run on the image after conversion (e.g. writing zeros into allocated clusters).
    qemu_io_commands: tuple[str, ...] = ()


# Zeros written through qemu-io allocate clusters that hold only zeros: the engine must not emit them.
ALLOCATED_ZEROS = ("write -P 0 8M 640k",)
RECIPES: tuple[Recipe, ...] = (
    Recipe("qcow2-v2", "qcow2", "v2", ("-O", "qcow2", "-o", "compat=0.10"), ALLOCATED_ZEROS),
    Recipe("qcow2-v3", "qcow2", "v3", ("-O", "qcow2", "-o", "compat=1.1"), (*ALLOCATED_ZEROS, "write -z 10M 128k")),
    Recipe("qcow2-v3-4k-clusters", "qcow2", "v3", ("-O", "qcow2", "-o", "cluster_size=4096"), ALLOCATED_ZEROS),
    Recipe("qcow2-v3-dense", "qcow2", "v3", ("-S", "0", "-O", "qcow2")),
    Recipe("qcow2-v2-zlib", "qcow2", "v2", ("-c", "-O", "qcow2", "-o", "compat=0.10")),
    Recipe("qcow2-v3-zlib", "qcow2", "v3", ("-c", "-O", "qcow2")),
    Recipe("qcow2-v3-zstd", "qcow2", "v3", ("-c", "-O", "qcow2", "-o", "compression_type=zstd")),
    Recipe("vmdk-monolithicSparse", "vmdk", "monolithicSparse", ("-O", "vmdk"), ALLOCATED_ZEROS),
    Recipe("vmdk-streamOptimized", "vmdk", "streamOptimized", ("-O", "vmdk", "-o", "subformat=streamOptimized")),
    Recipe("vhd-fixed", "vhd", "fixed", ("-O", "vpc", "-o", "subformat=fixed")),
    Recipe("vhd-dynamic", "vhd", "dynamic", ("-O", "vpc", "-o", "subformat=dynamic"), ALLOCATED_ZEROS),
    Recipe("vhdx-fixed", "vhdx", "fixed", ("-O", "vhdx", "-o", "subformat=fixed")),
    Recipe("vhdx-dynamic", "vhdx", "dynamic", ("-O", "vhdx", "-o", "subformat=dynamic"), ALLOCATED_ZEROS),
    Recipe("vdi-static", "vdi", "static", ("-O", "vdi", "-o", "static=on")),
    Recipe("vdi-dynamic", "vdi", "dynamic", ("-O", "vdi"), ALLOCATED_ZEROS),
    Recipe("raw", "raw", "raw", ("-O", "raw")),
)
QEMU_IO_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi", "raw": "raw"}


def qemu_img_available() -> bool:
    return shutil.which("qemu-img") is not None and shutil.which("qemu-io") is not None


# A developer without qemu-utils skips these; CI (which installs it) never does, so a lost install fails there.
requires_qemu_img = pytest.mark.skipif(
    (shutil.which("qemu-img") is None or shutil.which("qemu-io") is None) and not os.environ.get("CI"),
    reason="qemu-img and qemu-io (Debian: qemu-utils) build the test images",
)


def run(*command: str | os.PathLike[str]) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


def write_pattern(path: Path, size: int = PATTERN_SIZE, seed: int = 7) -> None:
    """A sparse raw disk: random bytes at unaligned offsets, compressible text, data in the very last block."""
    generator = random.Random(seed)
    text = b"diskport writes this sentence again and again so compressed clusters really compress. " * 4096
    pieces = [
        (0x1234, generator.randbytes(5_000)),
        (MIB + 777, generator.randbytes(300_000)),  # spans a 512 KiB block boundary
        (3 * MIB + 12_345, text[:1_500_000]),  # compressible, spans several clusters and blocks
        (6 * MIB - 3, generator.randbytes(7)),  # a few bytes across a 1 MiB boundary
        (10 * MIB + 4096, generator.randbytes(2 * MIB)),
        (size - 1_000, generator.randbytes(997)),  # the last block, which is partial
    ]
    with path.open("wb") as file:
        file.truncate(size)
        for offset, data in pieces:
            file.seek(offset)
            file.write(data)


def build_image(recipe: Recipe, pattern: Path, directory: Path) -> ImageCase:
    path = directory / f"{recipe.name}.img"
    run("qemu-img", "convert", "-f", "raw", *recipe.convert_options, pattern, path)
    for command in recipe.qemu_io_commands:
        run("qemu-io", "-f", QEMU_IO_FORMATS[recipe.format], "-c", command, path)
    oracle = directory / f"{recipe.name}.oracle.raw"
    run("qemu-img", "convert", "-f", QEMU_IO_FORMATS[recipe.format], "-O", "raw", path, oracle)
    return ImageCase(recipe.name, path, recipe.format, recipe.subformat, oracle)
