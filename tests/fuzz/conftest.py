from __future__ import annotations

import shutil

import pytest

from .seeds import build_seeds


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img builds the seed images")
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))
