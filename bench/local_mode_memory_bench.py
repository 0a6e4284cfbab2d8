"""Peak memory of local mode, all its processes together, while it imports a dense qcow2.

Starts `diskport serve` on free ports, uploads a qcow2 of `--size-gib` GiB whose every block holds data to a
bucket of the emulator, imports it through the IMS API and samples, every 0.2 s, the memory of the serve
process and every process below it (the AWS emulator and the function instances): the sum of their RSS
(shared pages counted once per process, so an overestimate) and of their PSS (shared pages split between
them), from the POST that starts the import to its end. Prints both peaks next to the disk's size, the
heaviest processes, the upload's own peak, the import's wall time, and whether the snapshot holds a block
for every block of the disk.

    python bench/local_mode_memory_bench.py [--size-gib 4] [--workdir DIR] [--reuse-image]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from pathlib import Path

from local_mode import BLOCK, GIB, MIB, dense_qcow2, descendants, local_mode


def memory_of(pids: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes."""
    rss = pss = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for name, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.MULTILINE):
            if name == "Rss":
                rss += int(value) * 1024
            else:
                pss += int(value) * 1024
    return rss, pss


def process_name(pid: int) -> str:
    """`serve`, a fork server, or the function an instance runs (the name its fork server gave the process)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    if b"lambda_runtime.forkserver" not in command:
        return f"serve {pid}"
    return f"fork server {pid}" if name.startswith("python") else f"{name} instance {pid}"


class PeakSampler(threading.Thread):
    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.started = time.monotonic()
        self.peak_rss = self.peak_pss = self.most_processes = 0
        self.peak_at = 0.0
        self.peak_by_process: dict[str, int] = {}
        self.at_peak: dict[str, int] = {}  # each process's PSS when all of them together peaked
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            pids = descendants(self.root)
            self.most_processes = max(self.most_processes, len(pids))
            sample: dict[str, int] = {}
            rss = 0
            for pid in pids:
                single_rss, single_pss = memory_of([pid])
                name = process_name(pid)
                rss += single_rss
                sample[name] = single_pss
                self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), single_rss)
            pss = sum(sample.values())
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.at_peak, self.peak_at = pss, sample, time.monotonic() - self.started

    def restart(self) -> None:
        """Forget the peaks so far (the upload's), to measure the import alone."""
        self.started = time.monotonic()
        self.peak_rss = self.peak_pss = 0
        self.peak_by_process, self.at_peak = {}, {}


def by_kind(sample: dict[str, int]) -> list[tuple[str, int, int]]:
    """(kind of process, how many, their PSS together), heaviest first: `ConvertChunk instance`, `fork server`..."""
    kinds: dict[str, list[int]] = {}
    for name, pss in sample.items():
        kinds.setdefault(name.rpartition(" ")[0], []).append(pss)
    return sorted(((kind, len(values), sum(values)) for kind, values in kinds.items()), key=lambda item: -item[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse-image", action="store_true", help="use the workdir's dense qcow2 from a run before")
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="diskport-memory-bench-"))
    if not arguments.reuse_image:
        for built in workdir.glob(f"dense-{arguments.size_gib:g}g-*.qcow2"):
            built.unlink()
    image = dense_qcow2(arguments.size_gib, workdir)
    with local_mode(workdir / "serve.log") as local:
        sampler = PeakSampler(local.process.pid)
        sampler.start()
        try:
            image_url = local.upload(image)
            upload_peak_rss = sampler.peak_rss
            time.sleep(2)
            resident_before_import, _ = memory_of(descendants(local.process.pid))
            sampler.restart()
            started = time.monotonic()
            job = local.wait(local.start_import(image_url), poll_seconds=1)
            wall = time.monotonic() - started
            blocks = sum(1 for _ in local.snapshot_blocks(local.snapshot_of(job))) if job["status"] == "SUCCESS" else 0
        finally:
            sampler.stopping.set()
            sampler.join()
    disk_blocks = arguments.size_gib * GIB // BLOCK
    print(f"disk              {arguments.size_gib} GiB dense qcow2 ({image.stat().st_size / GIB:.2f} GiB file)")
    print(f"job               {job['status']} in {wall:.0f} s ({arguments.size_gib * 1024 / wall:.0f} MiB/s)")
    print(f"snapshot blocks   {blocks} of {disk_blocks}")
    print(f"processes         at most {sampler.most_processes} (serve, its fork servers, function instances)")
    print(
        f"peak memory RSS   {sampler.peak_rss / MIB:.0f} MiB summed over processes "
        f"({sampler.peak_rss / (arguments.size_gib * GIB):.2f} of the disk's size)"
    )
    print(f"peak memory PSS   {sampler.peak_pss / MIB:.0f} MiB summed over processes")
    print(f"upload peak RSS   {upload_peak_rss / MIB:.0f} MiB (the multipart upload to the emulator, before importing)")
    print(f"RSS at import     {resident_before_import / MIB:.0f} MiB, all processes, once the upload is done")
    for name, peak in sorted(sampler.peak_by_process.items(), key=lambda item: -item[1])[:6]:
        print(f"  {name:60} {peak / MIB:6.0f} MiB RSS at its peak")
    print(f"at the PSS peak   {sampler.peak_at:.0f} s into the import:")
    for kind, count, pss in by_kind(sampler.at_peak):
        print(f"  {count} x {kind:56} {pss / MIB:6.0f} MiB PSS together")
    print(
        f"local mode peak memory, {arguments.size_gib} GiB dense import, all processes: "
        f"{sampler.peak_pss / MIB:.0f} MiB PSS ({sampler.peak_rss / MIB:.0f} MiB RSS summed)"
    )


if __name__ == "__main__":
    main()
