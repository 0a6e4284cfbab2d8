"""The functions that read disks reuse their block buffers instead of faulting fresh pages in for every job.

The engine changes nothing in the process: glibc's malloc thresholds are configuration, `GLIBC_TUNABLES` in the
environment template.yaml gives the Fetch and Convert functions (and so local mode's function instances).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from diskport_emulator import FunctionInstances, LocalStack

PAGE_SIZE = resource.getpagesize()
IMAGE_SIZE = 64 * 1024 * 1024
DISK_READING_FUNCTIONS = ("FetchSourceFunction", "ConvertChunkFunction")
# Below this, a 512 KiB block and an 8 MiB S3 read come from the heap; above the other, freed heap is given back.
EXPECTED_TUNABLES = {"glibc.malloc.mmap_threshold": 16 * 1024 * 1024, "glibc.malloc.trim_threshold": 64 * 1024 * 1024}
DYNAMIC_LOADER = Path("/lib64/ld-linux-x86-64.so.2")

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)

# Reads a dense disk four times over in a process of its own, and prints the page faults of each pass.
PASSES = """
import json, resource, sys
from diskport.engine import LocalFileSource, open_disk
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with LocalFileSource(sys.argv[1]) as source, open_disk(source) as disk:
        for _block in disk.iter_blocks(0, disk.virtual_size):
            pass
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def template_tunables(logical_id: str) -> str:
    return LocalStack().function_environment(logical_id)["GLIBC_TUNABLES"]


def parsed(tunables: str) -> dict[str, int]:
    return {name: int(value) for name, _, value in (item.partition("=") for item in tunables.split(":"))}


def faults_per_pass(image: Path, environment: dict[str, str]) -> list[int]:
    answer = subprocess.run(
        [sys.executable, "-c", PASSES, str(image)], env=environment, capture_output=True, text=True, check=True
    )
    faults: list[int] = json.loads(answer.stdout)
    return faults


@pytest.mark.parametrize("logical_id", DISK_READING_FUNCTIONS)
def test_the_functions_that_read_disks_run_with_fixed_malloc_thresholds(logical_id: str) -> None:
    assert parsed(template_tunables(logical_id)) == EXPECTED_TUNABLES


@pytest.mark.parametrize("logical_id", DISK_READING_FUNCTIONS)
def test_local_function_instances_get_the_tunables_of_the_template(logical_id: str) -> None:
    instances = FunctionInstances(LocalStack(), base_environment=dict)
    assert instances.environment(logical_id)["GLIBC_TUNABLES"] == template_tunables(logical_id)


@glibc_only
@pytest.mark.skipif(not DYNAMIC_LOADER.exists(), reason="the x86-64 dynamic loader lists the tunables")
def test_glibc_knows_the_tunables_by_those_names() -> None:
    # Given the tunables as the template writes them
    environment = {**os.environ, "GLIBC_TUNABLES": template_tunables("ConvertChunkFunction")}
    # When the dynamic loader lists what it read (a misspelt name is ignored without a word, and lists as 0x0)
    listing = subprocess.run(
        [str(DYNAMIC_LOADER), "--list-tunables"], env=environment, capture_output=True, text=True, check=True
    ).stdout
    # Then each holds the value the template gives it
    for name, value in EXPECTED_TUNABLES.items():
        assert re.search(rf"^{re.escape(name)}: {value:#x} ", listing, re.MULTILINE), listing


@glibc_only
def test_repeated_passes_over_a_dense_disk_reuse_memory(tmp_path: Path) -> None:
    # Given a 64 MiB raw disk where every block holds data
    image = tmp_path / "dense.raw"
    image.write_bytes(random.Random(1).randbytes(IMAGE_SIZE))
    without = {name: value for name, value in os.environ.items() if name != "GLIBC_TUNABLES"}
    # When every block is read and hashed, several times over, with the template's tunables and with glibc's defaults
    tuned = faults_per_pass(image, {**without, "GLIBC_TUNABLES": template_tunables("ConvertChunkFunction")})
    defaults = faults_per_pass(image, without)
    # Then, once warm, a tuned pass faults in far fewer pages than it reads (glibc's defaults fault in about a third)
    assert min(tuned[1:]) < IMAGE_SIZE // PAGE_SIZE // 8, tuned
    assert min(defaults[1:]) > 2 * min(tuned[1:]), (defaults, tuned)
