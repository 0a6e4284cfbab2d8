"""The one compiled part of diskport; everything else is declared in pyproject.toml.

SHA-256 of 16 blocks at once (docs/engine.md). It is optional: without a C compiler the install still succeeds
and the engine hashes with hashlib. The Lambda layer compiles the same source with the same flags
(layers/diskport/Makefile).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "diskport.engine._multibuffer_sha256",
            sources=["layers/diskport/diskport/engine/_multibuffer_sha256.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
