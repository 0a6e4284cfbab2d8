from __future__ import annotations

from pathlib import Path

import pytest

from .images import RECIPES, ImageCase, build_image, qemu_img_available, write_pattern


@pytest.fixture(scope="session")
def image_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageCase]:
    """Every supported format and sub-format, built once per session from the same raw pattern."""
    if not qemu_img_available():
        pytest.skip("qemu-img and qemu-io are needed to build test images")
    directory = tmp_path_factory.mktemp("images")
    pattern = directory / "pattern.raw"
    write_pattern(pattern)
    return {recipe.name: build_image(recipe, pattern, directory) for recipe in RECIPES}


@pytest.fixture(params=[recipe.name for recipe in RECIPES])
def image_case(request: pytest.FixtureRequest, image_cases: dict[str, ImageCase]) -> ImageCase:
    return image_cases[request.param]


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
