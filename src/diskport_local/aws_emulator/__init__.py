"""The AWS emulator local mode and the tests share: moto, with the parts diskport depends on made strict.

Built against moto 5.2.5 (`MOTO_VERSION`); the strict services replace moto internals by name, so another
moto version must be checked against them first.
"""

from __future__ import annotations

from diskport_local.aws_emulator import ebs, s3_ranges

MOTO_VERSION = "5.2.5"


def install_strict_services() -> None:
    """Install the strict services into moto in this process (idempotent)."""
    ebs.install()
    s3_ranges.install()
