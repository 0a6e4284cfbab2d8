"""Seed images for the parser fuzzers: one small valid file per format and sub-format the engine reads.

Both fuzzers (hypothesis in CI, atheris on demand) start from these files, so their mutations land in real
headers and tables rather than in noise a parser refuses at its first byte. Besides what qemu-img converts, a few
seeds are crafted after it, one for each kind of table the engine once read differently from qemu or at a cost
out of proportion to the file: zero-flag and COPIED-only qcow2 entries, zstd clusters, VDI discarded blocks, VMDK
zeroed grains, a streamOptimized VMDK whose footer names its directory, and a VMDK of one-entry grain tables.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.unit.engine.crafting import sparse_vmdk

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
    "qcow2-zstd": ("qcow2", ("-c", "-o", "compression_type=zstd")),
}


def write_seed_disk(path: Path) -> Path:
    """A 1 MiB raw disk with a little data in each half."""
    with path.open("wb") as file:
        file.truncate(2 * BLOCK)
        for block in range(2):
            file.seek(block * BLOCK + 1000)
            file.write(bytes(range(256)) * 8)
    return path


def _qemu_io(path: Path, image_format: str, *commands: str) -> None:
    arguments = [part for command in commands for part in ("-c", command)]
    subprocess.run(["qemu-io", "-f", image_format, *arguments, str(path)], check=True, capture_output=True)


def _qcow2_zero_flags(folder: Path) -> bytes:
    """Zero-flag entries written by qemu over the middle, COPIED-only entries crafted over some of them."""
    path = folder / "zero-flags.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(path), "1M"], check=True)
    _qemu_io(path, "qcow2", "write -P 9 0 8k", "write -z 8k 1000k", "write -P 8 1016k 8k")
    data = bytearray(path.read_bytes())
    (l1_offset,) = struct.unpack_from(">Q", data, 40)
    l2_offset = struct.unpack_from(">Q", data, l1_offset)[0] & 0x00FF_FFFF_FFFF_FE00
    data[l2_offset + 8 * 10 : l2_offset + 8 * 20] = struct.pack(">Q", 1 << 63) * 10
    return bytes(data)


def _vdi_discarded(folder: Path, disk: Path) -> bytes:
    path = folder / "discarded.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(path), "4M"], check=True)
    _qemu_io(path, "vdi", "write -P 7 0 4k")
    data = bytearray(path.read_bytes())
    (block_map_offset,) = struct.unpack_from("<I", data, 340)
    data[block_map_offset + 4 : block_map_offset + 16] = struct.pack("<I", 0xFFFF_FFFE) * 3
    return bytes(data)


def _vmdk_zeroed_grains(folder: Path) -> bytes:
    path = folder / "zeroed.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", str(path), "1M"], check=True)
    _qemu_io(path, "vmdk", "write -P 7 0 4k")
    data = bytearray(path.read_bytes())
    (directory_sector,) = struct.unpack_from("<Q", data, 56)
    (table_sector,) = struct.unpack_from("<I", data, directory_sector * 512)
    data[table_sector * 512 + 4 : table_sector * 512 + 64] = struct.pack("<I", 1) * 15
    return bytes(data)


def _vmdk_stream_footer(folder: Path, disk: Path) -> bytes:
    """A streamOptimized VMDK as VMware writes it: the header says "directory at the end", a footer names it."""
    path = folder / "stream-footer.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(disk), str(path)],
        check=True,
        capture_output=True,
    )
    data = bytearray(path.read_bytes())
    header = bytes(data[:512])
    while data.endswith(bytes(512)):
        del data[-512:]
    struct.pack_into("<Q", data, 56, 0xFFFF_FFFF_FFFF_FFFF)
    return bytes(data) + struct.pack("<QII", 1, 0, 3).ljust(512, b"\0") + header + bytes(512)


def _vmdk_one_entry_tables(folder: Path) -> bytes:
    grains = {0: b"first", 700: bytes(range(256)), 2047: b"last"}
    path = sparse_vmdk(
        folder / "one-entry.vmdk", capacity_sectors=2048, grain_sectors=1, entries_per_grain_table=1, grains=grains
    )
    return path.read_bytes()


CRAFTED_SEEDS: dict[str, Callable[[Path, Path], bytes]] = {
    "qcow2-zero-flags": lambda folder, _disk: _qcow2_zero_flags(folder),
    "vdi-discarded": _vdi_discarded,
    "vmdk-zeroed-grains": lambda folder, _disk: _vmdk_zeroed_grains(folder),
    "vmdk-stream-footer": _vmdk_stream_footer,
    "vmdk-one-entry-tables": lambda folder, _disk: _vmdk_one_entry_tables(folder),
}
SEED_NAMES = sorted([*SEED_RECIPES, *CRAFTED_SEEDS])


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
    for name, build in CRAFTED_SEEDS.items():
        seeds[name] = build(folder, disk)
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
