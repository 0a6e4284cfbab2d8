"""Table entries that mean zeros without being zero bytes, next to qemu-img: a disk costs its data, not its size.

Three ordinary images, built in this run, whose tables are almost all entries of that kind:

- a 500 GiB qcow2 whose every cluster has the zero flag (what qemu writes for write-zeroes and discards),
- a 16 TiB VDI whose every block is discarded (0xFFFFFFFE, what VirtualBox writes),
- a 512 GiB sparse VMDK whose every grain is zeroed (entry 1, with the zeroed-grain flag).

For each: the seconds the engine takes to open the image, map it (`allocated_ranges()`) and emit every non-zero
block (a few, at both ends), next to `qemu-img convert` of the same file into qemu's null driver (with
`--target-is-zero`, so that it writes only data, as into a new sparse raw file). Each should take under 5 s.

    python bench/zero_entries_bench.py [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from diskport.engine import BLOCK_SIZE, LocalFileSource, open_disk

GIB = 1024**3
TIB = 1024 * GIB
MIB = 1024**2
GOAL_SECONDS = 5.0


def run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


def qcow2_zero_flags(folder: Path) -> tuple[Path, str, int]:
    path = folder / "zero-flags.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "500G")
    run("qemu-io", "-f", "qcow2", "-c", "write -n -z 0 500G", "-c", "write -P 7 0 1M", "-c", "write -P 8 499G 1M", path)
    return path, "qcow2", 500 * GIB


def vdi_discarded(folder: Path) -> tuple[Path, str, int]:
    path = folder / "discarded.vdi"
    run("qemu-img", "create", "-q", "-f", "vdi", path, "16T")
    run("qemu-io", "-f", "vdi", "-c", "write -P 7 0 1M", "-c", f"write -P 8 {16 * TIB - MIB} 1M", path)
    data = bytearray(path.read_bytes()[:512])
    (block_map_offset,) = struct.unpack_from("<I", data, 340)
    (blocks,) = struct.unpack_from("<I", data, 384)
    with path.open("r+b") as file:
        file.seek(block_map_offset)
        block_map = bytearray(file.read(blocks * 4))
        # Every free entry becomes discarded: 0xFFFFFFFE, little-endian.
        block_map = block_map.replace(b"\xff\xff\xff\xff", b"\xfe\xff\xff\xff")
        file.seek(block_map_offset)
        file.write(block_map)
    return path, "vdi", 16 * TIB


def vmdk_zeroed_grains(folder: Path) -> tuple[Path, str, int]:
    path = folder / "zeroed-grains.vmdk"
    run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", path, "512G")
    # qemu-img creates every grain table; qemu-io cannot zero 512 GiB without writing it, so the entries are set to 1
    # (zeroed) here, as a VMware host does after write-zeroes.
    header = path.read_bytes()[:512]
    (entries_per_table,) = struct.unpack_from("<I", header, 44)
    (directory_sector,) = struct.unpack_from("<Q", header, 56)
    tables = -(-512 * GIB // (entries_per_table * 64 * 1024))
    with path.open("r+b") as file:
        file.seek(directory_sector * 512)
        for table_sector in struct.unpack(f"<{tables}I", file.read(tables * 4)):
            file.seek(table_sector * 512)
            file.write(struct.pack("<I", 1) * entries_per_table)
    run("qemu-io", "-f", "vmdk", "-c", "write -P 7 0 1M", "-c", "write -P 8 511G 1M", path)
    return path, "vmdk", 512 * GIB


def engine_seconds(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with LocalFileSource(path) as source, open_disk(source) as disk:
        disk.allocated_ranges()
        blocks = sum(1 for _ in disk.iter_blocks(0, -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE))
    return time.perf_counter() - started, blocks


def qemu_seconds(path: Path, qemu_format: str, virtual_size: int) -> float:
    started = time.perf_counter()
    # Into qemu's null driver, told it reads as zeros (as a new sparse file would), so qemu-img writes only data.
    run(
        "qemu-img", "convert", "-n", "--target-is-zero", "-f", qemu_format, "--target-image-opts", path,
        f"driver=null-co,size={virtual_size}",
    )  # fmt: skip
    return time.perf_counter() - started


def best(measure: Callable[[], float], repeat: int) -> float:
    return min(measure() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    arguments = parser.parse_args()
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        raise SystemExit("qemu-img and qemu-io (Debian: qemu-utils) build the images")
    with tempfile.TemporaryDirectory(dir=arguments.workdir) as folder:
        goal = f"under {GOAL_SECONDS:.0f} s"
        print(f"{'image':<36} {'file MiB':>9} {'engine s':>9} {'qemu-img s':>11} {'blocks':>7}  {goal}")
        for build in (qcow2_zero_flags, vdi_discarded, vmdk_zeroed_grains):
            path, qemu_format, virtual_size = build(Path(folder))
            engine = best(partial(lambda image: engine_seconds(image)[0], path), arguments.repeat)
            blocks = engine_seconds(path)[1]
            qemu = best(partial(qemu_seconds, path, qemu_format, virtual_size), arguments.repeat)
            name = f"{qemu_format} {virtual_size // GIB} GiB, {build.__name__}"
            file_mib = path.stat().st_size / MIB
            verdict = "yes" if engine < GOAL_SECONDS else "NO"
            print(f"{name:<36} {file_mib:>9.1f} {engine:>9.2f} {qemu:>11.2f} {blocks:>7}  {verdict}")
            path.unlink()


if __name__ == "__main__":
    main()
