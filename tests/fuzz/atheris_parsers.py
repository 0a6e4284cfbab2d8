"""Coverage-guided fuzzing of the engine's parsers with atheris (libFuzzer), for as long as asked.

    .venv/bin/python -m tests.fuzz.atheris_parsers -max_total_time=600 .fuzz-corpus
    make fuzz FUZZ_SECONDS=3600

Starts from the seed images of every format (written into the corpus folder on first run). An input that
raises anything but a DiskError is a crash: libFuzzer stops and writes it to crash-<hash> for replay
(`python -m tests.fuzz.atheris_parsers crash-<hash>`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["diskport"]):
    from tests.fuzz.exercise import exercise

from tests.fuzz.seeds import build_seeds


def test_one_input(data: bytes) -> None:
    exercise(data)


def seed_corpus(arguments: list[str]) -> None:
    """Write the seed images into the corpus folder (the first argument that is a folder), if it is empty."""
    folders = [Path(argument) for argument in arguments[1:] if not argument.startswith("-")]
    if not folders or (folders[0].exists() and not folders[0].is_dir()):
        return
    corpus = folders[0]
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in build_seeds(Path(scratch)).items():
            (corpus / f"seed-{name}").write_bytes(data)


def main() -> None:
    seed_corpus(sys.argv)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
