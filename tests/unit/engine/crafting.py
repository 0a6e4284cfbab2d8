"""Helpers that build hostile or unsupported files for the safety tests."""

from __future__ import annotations

import struct
from pathlib import Path

from diskport.engine import LocalFileSource, open_disk
from diskport.engine.crc32c import crc32c
from diskport.engine.disk import DiskImage

from .images import run

KIB = 1024
MIB = 1024 * KIB


def qemu_img_create(path: Path, image_format: str, size: str | None = None, *options: str) -> Path:
    command: list[str] = ["qemu-img", "create", "-q", "-f", image_format, *options, str(path)]
    if size is not None:
        command.append(size)
    run(*command)
    return path


def patch(path: Path, offset: int, data: bytes) -> Path:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)
    return path


def open_path(path: Path) -> DiskImage:
    """Open and read everything the way the pipeline does: the allocation map, then every block."""
    with LocalFileSource(path) as source:
        disk = open_disk(source)
        try:
            disk.allocated_ranges()
            for _block in disk.iter_blocks(0, disk.virtual_size):
                pass
        finally:
            disk.close()
        return disk


def fix_vhd_checksum(path: Path, structure_offset: int, checksum_offset: int, size: int) -> None:
    data = bytearray(path.read_bytes()[structure_offset : structure_offset + size])
    data[checksum_offset : checksum_offset + 4] = bytes(4)
    patch(path, structure_offset + checksum_offset, struct.pack(">I", ~sum(data) & 0xFFFF_FFFF))


def vhd_footer_offset(path: Path) -> int:
    return path.stat().st_size - 512


def vhdx_metadata_item_offset(path: Path, item_guid_le: bytes) -> int:
    """The file offset of a VHDX metadata item, found through the region and metadata tables."""
    data = path.read_bytes()
    region_table = data[192 * KIB : 256 * KIB]
    (count,) = struct.unpack_from("<I", region_table, 8)
    metadata_region_le = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
    for number in range(count):
        position = 16 + number * 32
        if region_table[position : position + 16] == metadata_region_le:
            (region_offset,) = struct.unpack_from("<Q", region_table, position + 16)
            (items,) = struct.unpack_from("<H", data, region_offset + 10)
            for item in range(items):
                entry = region_offset + 32 + item * 32
                if data[entry : entry + 16] == item_guid_le:
                    (item_offset,) = struct.unpack_from("<I", data, entry + 16)
                    return region_offset + item_offset
    raise LookupError("metadata item not found")


def vhdx_fix_header_checksums(path: Path) -> None:
    for offset in (64 * KIB, 128 * KIB):
        header = bytearray(path.read_bytes()[offset : offset + 4 * KIB])
        header[4:8] = bytes(4)
        patch(path, offset + 4, struct.pack("<I", crc32c(bytes(header))))


FILE_PARAMETERS_LE = bytes.fromhex("3767a1ca36fa434db3b633f0aa44e76b")
VIRTUAL_DISK_SIZE_LE = bytes.fromhex("2442a52f1bcd7648b2115dbed83bf4b8")
