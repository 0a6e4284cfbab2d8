"""The services moto mocks more leniently than AWS behaves, replaced by ones that behave as AWS documents."""

from __future__ import annotations

from diskport_emulator.services import ebs, s3_notifications, s3_ranges


def install_strict_services() -> None:
    """Install the strict services into moto in this process (idempotent): EBS direct APIs, ranged S3 reads,
    S3 event notifications as AWS structures them."""
    ebs.install()
    s3_ranges.install()
    s3_notifications.install()
