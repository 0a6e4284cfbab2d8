"""An OVA imports the disk it holds, read in place from the object; other archives fail the job with IMG.0072."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any


def _ova(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ovf(*disks: tuple[str, str]) -> bytes:
    files = "".join(f'<File ovf:id="f-{disk_id}" ovf:href="{name}"/>' for disk_id, name in disks)
    entries = "".join(
        f'<Disk ovf:diskId="{disk_id}" ovf:fileRef="f-{disk_id}" ovf:capacity="1"/>' for disk_id, _ in disks
    )
    return (
        '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">'
        f"<References>{files}</References><DiskSection>{entries}</DiskSection></Envelope>"
    ).encode()


def test_the_named_disk_of_an_ova_becomes_the_image_byte_for_byte(
    importer: Any, image_files: dict[str, Any], oracle_blocks: Any
) -> None:
    # Given an OVA holding two disks, the second a streamOptimized VMDK built by qemu-img
    vmdk = image_files["vmdk-streamOptimized"]
    ova = _ova(
        [
            ("app.ovf", _ovf(("vmdisk1", "app-disk1.vmdk"), ("vmdisk2", "app-disk2.vmdk"))),
            ("app-disk1.vmdk", image_files["vmdk"].path.read_bytes()),
            ("app-disk2.vmdk", Path(vmdk.path).read_bytes()),
        ]
    )
    # When it is imported naming the second disk
    job = importer.import_file(ova, "appliances/app.ova", ova_disk="vmdisk2")
    # Then the import succeeded and the snapshot holds that disk exactly as qemu-img reads it
    assert job["status"] == "SUCCESS", job
    image = importer.image(job["entities"]["image_id"])
    assert image["diskport_source_format"] == "vmdk"
    assert importer.snapshot_blocks(image["diskport_snapshot_id"]) == oracle_blocks(vmdk.oracle)


def test_an_ova_with_two_disks_and_none_named_fails_listing_them(importer: Any, image_files: dict[str, Any]) -> None:
    disk = image_files["vmdk"].path.read_bytes()
    ova = _ova([("app.ovf", _ovf(("vmdisk1", "a.vmdk"), ("vmdisk2", "b.vmdk"))), ("a.vmdk", disk), ("b.vmdk", disk)])
    job = importer.import_file(ova, "appliances/two.ova")
    assert job["status"] == "FAIL"
    assert job["error_code"] == "IMG.0072"
    assert "vmdisk1 (a.vmdk), vmdisk2 (b.vmdk)" in job["fail_reason"]


def test_a_gzipped_disk_fails_the_job_saying_to_decompress_it(importer: Any, image_files: dict[str, Any]) -> None:
    job = importer.import_file(gzip.compress(image_files["qcow2"].path.read_bytes()), "disks/data1.qcow2.gz")
    assert job["status"] == "FAIL"
    assert job["error_code"] == "IMG.0072"
    assert "This is a gzip file, not a disk image: decompress it first" in job["fail_reason"]
