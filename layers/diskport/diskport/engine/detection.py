"""Tell the format of an image from its content, never its name, and open it through that format's checks."""

from __future__ import annotations

import struct
from collections.abc import Callable

from .containers import disk_in_container
from .disk import DiskImage
from .errors import BrokenImageError, UnsupportedImageError
from .formats.qcow2 import open_qcow2
from .formats.raw import open_raw
from .formats.vdi import open_vdi
from .formats.vhd import open_vhd
from .formats.vhdx import open_vhdx
from .formats.vmdk import open_vmdk, open_vmdk_descriptor
from .inspection import MetadataReader
from .layout import Layout
from .limits import InspectionLimits
from .sources import ByteSource

SNIFF_BYTES = 4096
VHD_FOOTER_SIZE = 512

# Formats recognised only to be refused by name.
UNSUPPORTED_FORMATS: dict[str, str] = {
    "qed": "QED images are not supported: convert the image (qemu-img convert -O qcow2 in.qed out.qcow2) and "
    "upload that.",
    "cowd": "VMware ESX sparse (COWD / vmfsSparse) extents are not supported: export the disk as a single-file "
    "VMDK (qemu-img convert -O vmdk -o subformat=streamOptimized in.vmdk out.vmdk) and upload that.",
    "parallels": "Parallels images are not supported: convert the image (qemu-img convert -O qcow2 in.hdd out.qcow2) "
    "and upload that.",
    "luks": "LUKS-encrypted images are not supported: upload a decrypted image.",
    "dmg": "Apple DMG images are not supported: convert the disk to raw or qcow2 and upload that.",
    "bochs": "Bochs images are not supported: convert the image (qemu-img convert -O qcow2 in.img out.qcow2) and "
    "upload that.",
}
# qemu reads its probe from the first 512 bytes of a file.
QEMU_PROBE_BYTES = 512
VMDK_DESCRIPTOR_VERSIONS = tuple(f"version={number}{end}".encode() for number in (1, 2, 3) for end in ("\n", "\r\n"))

FORMAT_LABELS = {
    "qcow2": "qcow2",
    "vmdk": "VMDK",
    "vmdk-descriptor": "VMDK",
    "vhd": "VHD",
    "vhdx": "VHDX",
    "vdi": "VDI",
    "raw": "raw",
}

Opener = Callable[[MetadataReader], Layout]
OPENERS: dict[str, Opener] = {
    "qcow2": open_qcow2,
    "vmdk": open_vmdk,
    "vmdk-descriptor": open_vmdk_descriptor,
    "vhd": open_vhd,
    "vhdx": open_vhdx,
    "vdi": open_vdi,
}


def detect_formats(head: bytes, tail: bytes) -> list[str]:
    """Every format whose signature appears in the first bytes or the last sector of the file."""
    found: list[str] = []
    if head.startswith(b"QFI\xfb"):
        found.append("qcow2")  # versions 1 and 3+ included: the qcow2 reader names them when it refuses them
    if head.startswith(b"QED\x00"):
        found.append("qed")
    if head.startswith(b"KDMV"):
        found.append("vmdk")
    if head.startswith(b"COWD"):
        found.append("cowd")
    if head.lstrip(b" \t\r\n").startswith(b"# Disk DescriptorFile") or _qemu_probes_vmdk_descriptor(head):
        found.append("vmdk-descriptor")
    if head.startswith(b"vhdxfile"):
        found.append("vhdx")
    if len(head) >= 68 and struct.unpack_from("<I", head, 64)[0] == 0xBEDA107F:
        found.append("vdi")
    if head.startswith(b"conectix") or tail.startswith(b"conectix"):
        found.append("vhd")
    if head.startswith((b"WithoutFreeSpace", b"WithouFreSpacExt")):
        found.append("parallels")
    if _is_bochs(head):
        found.append("bochs")
    if head.startswith(b"LUKS\xba\xbe"):
        found.append("luks")
    if tail.startswith(b"koly") and len(tail) == VHD_FOOTER_SIZE:
        found.append("dmg")
    return found


def _qemu_probes_vmdk_descriptor(head: bytes) -> bool:
    """Whether qemu would open the file as a VMDK descriptor: comment lines and blank lines of spaces, then a
    `version=1`, `2` or `3` line, in its first 512 bytes (qemu's vmdk_probe). Imported as raw, such a file would be
    a disk qemu reads as something else."""
    text = head[:QEMU_PROBE_BYTES]
    position = 0
    while position < len(text):
        if text[position : position + 1] == b"#":
            newline = text.find(b"\n", position)
            position = len(text) if newline < 0 else newline + 1
            continue
        if text[position : position + 1] == b" ":
            while text[position : position + 1] == b" ":
                position += 1
            if text[position : position + 1] == b"\r":
                position += 1
            if text[position : position + 1] != b"\n":
                return False
            position += 1
            continue
        return text.startswith(VMDK_DESCRIPTOR_VERSIONS, position)
    return False


def _is_bochs(head: bytes) -> bool:
    """qemu's Bochs probe: the magic, type and subtype strings, and header version 1 or 2."""
    if len(head) < QEMU_PROBE_BYTES:
        return False
    (version,) = struct.unpack_from("<I", head, 64)
    return (
        head[:32].split(b"\0", 1)[0] == b"Bochs Virtual HD Image"
        and head[32:48].split(b"\0", 1)[0] == b"Redolog"
        and head[48:64].split(b"\0", 1)[0] == b"Growing"
        and b"\0" in head[:32]
        and b"\0" in head[32:48]
        and b"\0" in head[48:64]
        and version in (0x0001_0000, 0x0002_0000)
    )


def open_disk(source: ByteSource, *, limits: InspectionLimits | None = None, ova_disk: str | None = None) -> DiskImage:
    """Detect the format by content, run every safety check, and return the virtual disk.

    An OVA opens at the disk it holds (`ova_disk` names one when it holds several); archives, compressed
    streams and files that cannot be a raw disk are refused (containers.py).

    Raises BrokenImageError for broken or unsafe files, UnsupportedImageError for formats the engine does not read,
    and SourceReadError where the source fails to give its bytes; `reason` says what to do about it.
    """
    limits = limits or InspectionLimits()
    size = source.size
    if size <= 0:
        raise BrokenImageError("The image file is empty (0 bytes): upload the disk image again.")
    head = source.read_at(0, min(SNIFF_BYTES, size))
    tail = source.read_at(size - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE) if size >= VHD_FOOTER_SIZE else b""
    formats = detect_formats(head, tail)
    inner_disk = disk_in_container(source, head, formats, ova_disk=ova_disk)
    if inner_disk is not None:
        return open_disk(inner_disk, limits=limits)
    if len(formats) > 1:
        raise BrokenImageError(
            f"The file carries the signatures of more than one format ({', '.join(formats)}): one image is hidden "
            "inside another. Upload the disk image on its own."
        )
    format_name = formats[0] if formats else "raw"
    if format_name in UNSUPPORTED_FORMATS:
        raise UnsupportedImageError(UNSUPPORTED_FORMATS[format_name])
    metadata = MetadataReader(source, limits, FORMAT_LABELS[format_name])
    layout = OPENERS[format_name](metadata) if format_name in OPENERS else open_raw(metadata)
    disk = DiskImage(source, layout, limits, metadata=metadata)
    _refuse_nested_image(disk)
    return disk


def _refuse_nested_image(disk: DiskImage) -> None:
    """An image whose virtual disk starts with another image's header, or ends with a VHD footer, is refused."""
    if disk.format == "raw" or disk.virtual_size == 0:
        return
    first_bytes = disk.read(0, SNIFF_BYTES)
    last_sector = (
        disk.read(disk.virtual_size - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE) if disk.virtual_size >= VHD_FOOTER_SIZE else b""
    )
    inner = detect_formats(first_bytes, last_sector)
    if inner:
        disk.close()
        raise BrokenImageError(
            f"The virtual disk inside this {disk.format} image carries a {inner[0]} header: an image inside an "
            "image. Upload the inner image itself."
        )
