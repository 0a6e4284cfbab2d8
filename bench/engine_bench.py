"""Engine throughput next to qemu-img, on images qemu-img builds in this run.

For each format: MB/s of virtual disk turned into non-zero 512 KiB blocks with their SHA-256 (the engine), next to
`qemu-img convert -O raw` of the same file (written to a file on the same file system), and their ratio; then the
time to read a sparse qcow2 (2 TiB virtual, 64 MiB of data) and the process's peak RSS.

The bench runs with the malloc tunables the Convert function gets from template.yaml (`GLIBC_TUNABLES`, which glibc
reads when a process starts: the bench starts itself again with them); `--malloc-defaults` runs with glibc's own.

    python bench/engine_bench.py [--size-mib 512] [--repeat 3] [--workdir DIR] [--malloc-defaults]

The last line reads `engine/qemu-img speed ratio, dense qcow2: <ratio>`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from diskport.engine import BLOCK_SIZE, LocalFileSource, open_disk

from diskport_emulator import LocalStack

MIB = 1024 * 1024
TIB = 1024 * 1024 * MIB
SPARSE_VIRTUAL_SIZE = 2 * TIB
SPARSE_DATA = 64 * MIB


@dataclass(frozen=True)
class Variant:
    name: str
    qemu_format: str
    convert_options: tuple[str, ...]


VARIANTS = (
    Variant("qcow2 (dense)", "qcow2", ("-O", "qcow2")),
    Variant("qcow2 zlib", "qcow2", ("-c", "-O", "qcow2")),
    Variant("qcow2 zstd", "qcow2", ("-c", "-O", "qcow2", "-o", "compression_type=zstd")),
    Variant("vmdk monolithicSparse", "vmdk", ("-O", "vmdk")),
    Variant("vmdk streamOptimized", "vmdk", ("-O", "vmdk", "-o", "subformat=streamOptimized")),
    Variant("vhd fixed", "vpc", ("-O", "vpc", "-o", "subformat=fixed")),
    Variant("vhd dynamic", "vpc", ("-O", "vpc", "-o", "subformat=dynamic")),
    Variant("vhdx fixed", "vhdx", ("-O", "vhdx", "-o", "subformat=fixed")),
    Variant("vhdx dynamic", "vhdx", ("-O", "vhdx", "-o", "subformat=dynamic")),
    Variant("vdi static", "vdi", ("-O", "vdi", "-o", "static=on")),
    Variant("vdi dynamic", "vdi", ("-O", "vdi")),
    Variant("raw", "raw", ("-O", "raw")),
)


def run(*command: str | os.PathLike[str]) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


def write_dense_pattern(path: Path, size: int) -> None:
    """Every block holds data; half of each 64 KiB is random, half text, so compressed formats really compress."""
    generator = random.Random(1)
    text = (b"diskport bench data compresses about this well. " * 700)[:32_768]
    with path.open("wb") as file:
        for _ in range(size // 65_536):
            file.write(generator.randbytes(32_768) + text)


def write_sparse_pattern(path: Path) -> None:
    """2 TiB of virtual disk with 64 one-MiB islands of random data spread across it."""
    generator = random.Random(2)
    with path.open("wb") as file:
        file.truncate(SPARSE_VIRTUAL_SIZE)
        islands = SPARSE_DATA // MIB
        for number in range(islands):
            file.seek(number * (SPARSE_VIRTUAL_SIZE // islands) + 12_345 * number)
            file.write(generator.randbytes(MIB))


def start_with_malloc_tunables(malloc_defaults: bool) -> None:
    """Start this bench again unless it runs with the Convert function's GLIBC_TUNABLES (or, asked, without any)."""
    wanted = None if malloc_defaults else LocalStack().function_environment("ConvertChunkFunction")["GLIBC_TUNABLES"]
    if os.environ.get("GLIBC_TUNABLES") == wanted:
        return
    environment = {name: value for name, value in os.environ.items() if name != "GLIBC_TUNABLES"}
    if wanted is not None:
        environment["GLIBC_TUNABLES"] = wanted
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], environment)


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    cpu_seconds: float  # this process and its children: what the work costs, whatever else the machine runs
    page_faults: int  # minor faults of this process: pages the kernel handed it (zeroed) during the run


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(action: Callable[[], object]) -> Timing:
    cpu_before, faults_before, started = cpu_seconds(), page_faults(), time.perf_counter()
    action()
    return Timing(time.perf_counter() - started, cpu_seconds() - cpu_before, page_faults() - faults_before)


def best_timings(actions: dict[str, Callable[[], object]], repeat: int) -> dict[str, Timing]:
    """The fastest of `repeat` runs (wall clock) of each action, with the CPU time that run used.

    The actions take turns, so a spell of other work on the machine falls on both rather than on one.
    """
    timings: dict[str, list[Timing]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            timings[name].append(timed(action))
    return {name: min(runs, key=lambda timing: timing.wall_seconds) for name, runs in timings.items()}


def settle() -> None:
    """Write the files just built to disk now, so that the kernel's writeback does not run during a measurement."""
    os.sync()


def engine_pass(path: Path) -> int:
    """Open the image and produce every non-zero block with its checksum; returns the virtual size."""
    with LocalFileSource(path) as source, open_disk(source) as disk:
        end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        for _block in disk.iter_blocks(0, end):
            pass
        return disk.virtual_size


def qemu_img_pass(path: Path, qemu_format: str, output: Path) -> None:
    run("qemu-img", "convert", "-f", qemu_format, "-O", "raw", path, output)
    output.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512, help="virtual size of each dense image (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per measurement (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build images (default: a temp dir)")
    parser.add_argument("--malloc-defaults", action="store_true", help="glibc's malloc thresholds, not the template's")
    arguments = parser.parse_args()
    start_with_malloc_tunables(arguments.malloc_defaults)
    if shutil.which("qemu-img") is None:
        print("qemu-img is needed (Debian: apt-get install qemu-utils)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=arguments.workdir))
    try:
        size = arguments.size_mib * MIB
        pattern = workdir / "dense.raw"
        write_dense_pattern(pattern, size)
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"dense images: {arguments.size_mib} MiB virtual, every block non-zero; best of {arguments.repeat}")
        print(f"{os.cpu_count()} CPUs, load average {load}: other work on the machine lowers the engine's figures most")
        print(f"malloc: {os.environ.get('GLIBC_TUNABLES') or 'glibc defaults'}")
        print(
            f"{'format':<24}{'engine MB/s':>12}{'qemu-img MB/s':>15}{'ratio':>8}"
            f"{'engine CPU s':>14}{'qemu-img CPU s':>16}{'engine faults':>15}"
        )
        dense_qcow2_ratio = 0.0
        for variant in VARIANTS:
            image = workdir / "image"
            run("qemu-img", "convert", "-f", "raw", *variant.convert_options, pattern, image)
            settle()
            timings = best_timings(
                {
                    "qemu-img": partial(qemu_img_pass, image, variant.qemu_format, workdir / "out.raw"),
                    "engine": partial(engine_pass, image),
                },
                arguments.repeat,
            )
            qemu, engine = timings["qemu-img"], timings["engine"]
            engine_rate = size / MIB / engine.wall_seconds
            qemu_rate = size / MIB / qemu.wall_seconds
            ratio = engine_rate / qemu_rate
            if variant.name == "qcow2 (dense)":
                dense_qcow2_ratio = ratio
            print(
                f"{variant.name:<24}{engine_rate:>12.0f}{qemu_rate:>15.0f}{ratio:>8.2f}"
                f"{engine.cpu_seconds:>14.2f}{qemu.cpu_seconds:>16.2f}{engine.page_faults:>15}",
                flush=True,
            )
            image.unlink()
        pattern.unlink()

        sparse_raw = workdir / "sparse.raw"
        sparse_image = workdir / "sparse.qcow2"
        write_sparse_pattern(sparse_raw)
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", sparse_raw, sparse_image)
        sparse_raw.unlink()
        settle()
        sparse = timed(partial(engine_pass, sparse_image))
        sparse_qemu = timed(partial(qemu_img_pass, sparse_image, "qcow2", workdir / "out.raw"))
        print(
            f"sparse qcow2 (2 TiB virtual, 64 MiB data): engine {sparse.wall_seconds:.2f} s, "
            f"qemu-img convert -O raw {sparse_qemu.wall_seconds:.2f} s"
        )
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the engine process: {peak_rss_mib:.0f} MiB")
        print(f"engine/qemu-img speed ratio, dense qcow2: {dense_qcow2_ratio:.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
