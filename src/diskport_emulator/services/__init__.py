"""The services moto mocks more leniently than AWS behaves, replaced by ones that behave as AWS documents."""

from __future__ import annotations

from diskport_emulator.services import ebs, ec2_offerings, moto_server, s3_multipart, s3_notifications, s3_ranges


def install_strict_services() -> None:
    """Install the strict services into moto in this process (idempotent): EBS direct APIs, ranged S3 reads,
    S3 event notifications as AWS structures them, multipart uploads completed without joining their parts in
    memory, and a server that frees each request's memory once it has answered it and finds each request's
    service fast; EC2's instance-type offerings are read when first used."""
    ebs.install()
    ec2_offerings.install()
    s3_ranges.install()
    s3_notifications.install()
    s3_multipart.install()
    moto_server.install()
