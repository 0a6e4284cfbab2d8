"""The engine is a library of its own: it raises its own errors, and the service maps them to IMS codes once."""

from __future__ import annotations

import ast
from pathlib import Path

import diskport.engine
import pytest
from botocore.exceptions import ClientError
from diskport.engine import (
    BrokenImageError,
    DiskError,
    RefusedImageError,
    SourceReadError,
    UnsupportedImageError,
)
from diskport.errors import (
    ImageRejectedError,
    SourceError,
    UnsupportedFormatError,
    engine_errors_as_ims,
    ims_error_of,
)

ENGINE_DIRECTORY = Path(diskport.engine.__file__).parent


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, wherever the import statement stands, relative imports made absolute."""
    package = ["diskport", "engine", *path.parent.relative_to(ENGINE_DIRECTORY).parts]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.append(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_the_engine_imports_nothing_of_the_service_around_it() -> None:
    # Given every module of the engine
    modules = sorted(ENGINE_DIRECTORY.rglob("*.py"))
    assert len(modules) > 10
    # When their imports are read, then none names a diskport module outside diskport.engine
    outside = [
        f"{path.relative_to(ENGINE_DIRECTORY)}: {name}"
        for path in modules
        for name in imported_modules(path)
        if (name == "diskport" or name.startswith("diskport."))
        and not (name == "diskport.engine" or name.startswith("diskport.engine."))
    ]
    assert outside == []


@pytest.mark.parametrize(
    ("engine_error", "service_type", "code"),
    [
        (BrokenImageError("The qcow2 L1 table lies outside the file."), ImageRejectedError, "IMG.0057"),
        (UnsupportedImageError("QED images are not supported."), UnsupportedFormatError, "IMG.0072"),
        (SourceReadError("The image file was deleted during import."), SourceError, "IMG.0057"),
    ],
)
def test_each_engine_error_becomes_one_ims_error_with_the_same_reason(
    engine_error: DiskError, service_type: type[Exception], code: str
) -> None:
    # When the service maps what the engine raised
    mapped = ims_error_of(engine_error)
    # Then the job fails with the IMS type and code of that kind of failure, and the engine's reason word for word
    assert type(mapped) is service_type
    assert mapped.code == code
    assert mapped.reason == engine_error.reason


def test_a_broken_and_an_unsupported_image_are_both_refusals_a_failed_read_is_not() -> None:
    assert issubclass(BrokenImageError, RefusedImageError)
    assert issubclass(UnsupportedImageError, RefusedImageError)
    assert not issubclass(SourceReadError, RefusedImageError)
    assert not issubclass(DiskError, ImageRejectedError)


def test_around_an_engine_call_a_failed_read_keeps_the_s3_error_as_its_cause() -> None:
    # Given a read the source refused for a 412 from S3
    client_error = ClientError({"Error": {"Code": "PreconditionFailed"}}, "GetObject")
    # When it escapes a call of the engine made inside engine_errors_as_ims
    with pytest.raises(SourceError) as caught, engine_errors_as_ims():
        try:
            raise client_error
        except ClientError as error:
            raise SourceReadError("The image file changed during import.") from error
    # Then the service's error carries the S3 error as its cause, which the retry rules read
    assert caught.value.__cause__ is client_error
    assert caught.value.reason == "The image file changed during import."


def test_around_an_engine_call_other_errors_pass_unchanged() -> None:
    with pytest.raises(ValueError, match="not the image's fault"), engine_errors_as_ims():
        raise ValueError("not the image's fault")
