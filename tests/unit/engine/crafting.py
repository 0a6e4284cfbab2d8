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


def sparse_vmdk(
    path: Path,
    *,
    capacity_sectors: int,
    grain_sectors: int,
    entries_per_grain_table: int,
    grains: dict[int, bytes],
    descriptor: str | None = None,
    flags: int = 3,
) -> Path:
    """A monolithicSparse VMDK built byte by byte: one grain table per sector, `grains` (index: data) stored after."""
    grain_size = grain_sectors * 512
    tables = -(-capacity_sectors // (grain_sectors * entries_per_grain_table))
    descriptor_sectors = 2
    directory_sector = 1 + descriptor_sectors
    directory_sectors = -(-tables * 4 // 512)
    first_table_sector = directory_sector + directory_sectors
    table_sectors = -(-entries_per_grain_table * 4 // 512)
    data_sector = first_table_sector + tables * table_sectors
    text = descriptor or (
        '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicSparse"\n\n'
        f'RW {capacity_sectors} SPARSE "{path.name}"\n'
    )
    header = struct.pack(
        "<4sIIQQQQIQQQ?ccccH",
        b"KDMV",
        1,
        flags,
        capacity_sectors,
        grain_sectors,
        1,
        descriptor_sectors,
        entries_per_grain_table,
        0,
        directory_sector,
        data_sector,
        False,
        b"\n",
        b" ",
        b"\r",
        b"\n",
        0,
    )
    image = bytearray(data_sector * 512 + len(grains) * grain_size)
    image[: len(header)] = header
    image[512 : 512 + len(text)] = text.encode()
    for table in range(tables):
        struct.pack_into("<I", image, directory_sector * 512 + 4 * table, first_table_sector + table * table_sectors)
    for number, (grain, data) in enumerate(sorted(grains.items())):
        table, entry = divmod(grain, entries_per_grain_table)
        sector = data_sector + number * grain_sectors
        struct.pack_into("<I", image, (first_table_sector + table * table_sectors) * 512 + 4 * entry, sector)
        image[sector * 512 : sector * 512 + len(data)] = data
    path.write_bytes(bytes(image))
    return path
