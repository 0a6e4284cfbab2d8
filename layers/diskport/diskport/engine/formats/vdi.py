"""VDI (VirtualBox), dynamic and static; differencing and undo images are refused.

Checked before anything is decoded: signature and version, image type, the parent and link UUIDs, sector and
block sizes as qemu accepts them, the virtual size against the block count, and a block map that fits the file and
the table cap. Each map entry is vetted when used: its block starts inside the file.
"""

from __future__ import annotations

import array
import struct

from ..errors import BrokenImageError, UnsupportedImageError
from ..inspection import REUPLOAD_HINT, MetadataReader
from ..limits import MIB, SECTOR
from ..tables import BlockTableLayout, end_of_run, unpack_table

HEADER_SIZE = 512
SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x0001_0001
IMAGE_TYPE_DYNAMIC = 1
IMAGE_TYPE_STATIC = 2
IMAGE_TYPE_UNDO = 3
IMAGE_TYPE_DIFFERENCING = 4
BLOCK_SIZE = MIB  # the only block size qemu and VirtualBox write
BLOCK_FREE = 0xFFFF_FFFF
BLOCK_ZERO = 0xFFFF_FFFE


def open_vdi(metadata: MetadataReader) -> VdiLayout:
    header = metadata.read(0, min(HEADER_SIZE, metadata.file_size), "header")
    if len(header) < HEADER_SIZE:
        raise BrokenImageError(f"The file starts like a VDI image but is shorter than a VDI header: {REUPLOAD_HINT}.")
    signature, version = struct.unpack_from("<II", header, 64)
    if signature != SIGNATURE:
        raise BrokenImageError(f"The VDI signature is wrong: {REUPLOAD_HINT}.")
    if version != VERSION_1_1:
        raise UnsupportedImageError(
            f"VDI version {version >> 16}.{version & 0xFFFF} is not supported, only 1.1 is: convert the image "
            "(VBoxManage clonemedium in.vdi out.vdi) and upload that."
        )
    (_header_size, image_type, _flags) = struct.unpack_from("<III", header, 72)
    (block_map_offset, data_offset) = struct.unpack_from("<II", header, 340)
    (sector_size,) = struct.unpack_from("<I", header, 360)
    (virtual_size, block_size, block_extra, blocks_in_image, _blocks_allocated) = struct.unpack_from(
        "<QIIII", header, 368
    )
    link_uuid = header[424:440]
    parent_uuid = header[440:456]
    if image_type in (IMAGE_TYPE_DIFFERENCING, IMAGE_TYPE_UNDO) or any(parent_uuid) or any(link_uuid):
        raise UnsupportedImageError(
            "Differencing (child) VDI images are not supported: merge the snapshot, or clone the disk into a "
            "standalone image (VBoxManage clonemedium child.vdi flat.vdi), and upload that."
        )
    if image_type not in (IMAGE_TYPE_DYNAMIC, IMAGE_TYPE_STATIC):
        raise BrokenImageError(f"The VDI header gives image type {image_type}, which does not exist: {REUPLOAD_HINT}.")
    if sector_size != SECTOR or block_size != BLOCK_SIZE or block_extra != 0:
        raise UnsupportedImageError(
            f"VDI images with {sector_size}-byte sectors, {block_size}-byte blocks and {block_extra} extra bytes per "
            "block are not supported (only 512, 1 MiB and 0 are): clone the disk (VBoxManage clonemedium) and "
            "upload that."
        )
    if block_map_offset % SECTOR or data_offset % SECTOR:
        raise BrokenImageError(f"The VDI block map or data offset is not sector-aligned: {REUPLOAD_HINT}.")
    metadata.require_virtual_size(virtual_size)
    if virtual_size > blocks_in_image * block_size:
        raise BrokenImageError(
            f"The VDI header claims a {virtual_size}-byte disk but maps only {blocks_in_image} blocks of {block_size} "
            f"bytes: {REUPLOAD_HINT}."
        )
    metadata.require_inside(block_map_offset, blocks_in_image * 4, "block map")
    blocks_needed = -(-virtual_size // block_size)
    block_map = unpack_table(metadata.read_table(block_map_offset, blocks_needed * 4, "block map"), 4, big_endian=False)
    subformat = "static" if image_type == IMAGE_TYPE_STATIC else "dynamic"
    # qemu counts the disk in whole sectors, rounding the header's size up (still inside the last mapped block).
    virtual_size = -(-virtual_size // SECTOR) * SECTOR
    return VdiLayout(subformat, virtual_size, metadata, data_offset=data_offset, block_map=block_map)


class VdiLayout(BlockTableLayout):
    format_name = "vdi"

    def __init__(
        self,
        subformat: str,
        virtual_size: int,
        metadata: MetadataReader,
        *,
        data_offset: int,
        block_map: array.array[int],
    ) -> None:
        super().__init__(subformat, virtual_size, metadata, block_size=BLOCK_SIZE, stored_unit_size=BLOCK_SIZE)
        self._data_offset = data_offset
        self._block_map = block_map

    def block_offset(self, index: int) -> int | None:
        entry = self._block_map[index]
        if entry >= BLOCK_ZERO:  # free or discarded: reads as zeros
            return None
        block_offset = self._data_offset + entry * BLOCK_SIZE
        file_size = self._metadata.file_size
        if block_offset >= file_size:
            raise BrokenImageError(
                f"VDI block {index} points to offset {block_offset}, past the end of the {file_size}-byte file: "
                f"{REUPLOAD_HINT}."
            )
        return block_offset

    def end_of_zero_run(self, index: int, stop: int) -> int:
        # Free and discarded blocks differ in the lowest bit only: a run of either is one search.
        return end_of_run(self._block_map, index, stop, all_ones=True, ignored_bits=BLOCK_FREE ^ BLOCK_ZERO)
