"""VHD (Virtual PC / Hyper-V), fixed and dynamic; differencing disks are refused.

Checked before anything is decoded: the footer's checksum and disk type, the virtual size (computed as qemu does),
a fixed disk's data against the file size, and for a dynamic disk the header's checksum, block size, and a BAT
that fits the file and the table cap and covers the disk; the copy of the footer at offset 0, where present,
equals the footer. Each BAT entry is vetted when used: its block lies inside the file.
"""

from __future__ import annotations

import array
import struct

from ..errors import BrokenImageError, UnsupportedImageError
from ..inspection import REUPLOAD_HINT, MetadataReader
from ..layout import StoredLayout
from ..limits import SECTOR
from ..tables import BlockTableLayout, end_of_run, unpack_table

FOOTER_SIZE = 512
DYNAMIC_HEADER_SIZE = 1024
DISK_TYPE_FIXED = 2
DISK_TYPE_DYNAMIC = 3
DISK_TYPE_DIFFERENCING = 4
UNALLOCATED = 0xFFFF_FFFF
# qemu's maximum CHS geometry; a disk that large takes its size from the footer, whoever made it.
MAX_GEOMETRY_SECTORS = 65535 * 16 * 255
# Creators known to write an exact current_size; for the others (Virtual PC, old qemu) CHS geometry is the truth.
CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\x00")


def open_vhd(metadata: MetadataReader) -> VhdLayout | StoredLayout:
    if metadata.file_size < FOOTER_SIZE:
        raise BrokenImageError(f"The file starts like a VHD image but is shorter than a VHD footer: {REUPLOAD_HINT}.")
    footer = metadata.read(metadata.file_size - FOOTER_SIZE, FOOTER_SIZE, "footer")
    if not footer.startswith(b"conectix"):
        raise BrokenImageError(
            "The file starts with a VHD header but has no VHD footer at its end: the upload is truncated; "
            "upload the whole file again."
        )
    _require_checksum(footer, 64, "footer")
    copy = metadata.read(0, FOOTER_SIZE, "footer copy") if metadata.file_size >= 2 * FOOTER_SIZE else b""
    if copy.startswith(b"conectix") and copy != footer:
        # qemu reads the copy at offset 0 when it has the cookie, the specification the footer at the end.
        raise BrokenImageError(
            "The VHD can be read two ways: its footer at the end of the file and the copy at offset 0 (which qemu "
            f"reads) disagree: {REUPLOAD_HINT}."
        )
    data_offset, _timestamp, creator = struct.unpack_from(">QI4s", footer, 16)
    current_size, cylinders, heads, sectors_per_track, disk_type = struct.unpack_from(">QHBBI", footer, 48)
    if disk_type == DISK_TYPE_DIFFERENCING:
        raise UnsupportedImageError(
            "Differencing (child) VHD images are not supported: merge the disk into its parent, or convert it "
            "(qemu-img convert -O vpc -o subformat=dynamic child.vhd flat.vhd), and upload that."
        )
    if disk_type not in (DISK_TYPE_FIXED, DISK_TYPE_DYNAMIC):
        raise BrokenImageError(f"The VHD footer gives disk type {disk_type}, which does not exist: {REUPLOAD_HINT}.")

    geometry_size = cylinders * heads * sectors_per_track * SECTOR
    uses_current_size = creator in CURRENT_SIZE_CREATORS or geometry_size == MAX_GEOMETRY_SECTORS * SECTOR
    virtual_size = current_size // SECTOR * SECTOR if uses_current_size else geometry_size
    metadata.require_virtual_size(max(virtual_size, current_size))

    if disk_type == DISK_TYPE_FIXED:
        if virtual_size == 0:
            raise BrokenImageError(f"The fixed VHD holds a disk of 0 bytes, which qemu refuses too: {REUPLOAD_HINT}.")
        data_size = metadata.file_size - FOOTER_SIZE
        if virtual_size > data_size:
            raise BrokenImageError(
                f"The fixed VHD claims a {virtual_size}-byte disk but holds only {data_size} bytes of data: "
                f"{REUPLOAD_HINT}."
            )
        # A fixed disk's data lies inside the file, before the footer.
        return StoredLayout("vhd", "fixed", virtual_size, stored_unit_size=0)

    dynamic_header = metadata.read(data_offset, DYNAMIC_HEADER_SIZE, "dynamic disk header")
    if not dynamic_header.startswith(b"cxsparse"):
        raise BrokenImageError(
            f"The dynamic VHD header at offset {data_offset} has no 'cxsparse' cookie: {REUPLOAD_HINT}."
        )
    _require_checksum(dynamic_header, 36, "dynamic disk header")
    table_offset, _header_version, table_entries, block_size = struct.unpack_from(">QIII", dynamic_header, 16)
    if block_size < SECTOR or block_size & (block_size - 1) or block_size > 256 * 1024 * 1024:
        raise BrokenImageError(
            f"The dynamic VHD block size {block_size} is not a power of two between 512 B and 256 MiB: {REUPLOAD_HINT}."
        )
    if table_entries * block_size < virtual_size:
        raise BrokenImageError(
            f"The dynamic VHD block table ({table_entries} blocks of {block_size} bytes) is too small for its "
            f"{virtual_size}-byte disk: {REUPLOAD_HINT}."
        )
    metadata.require_inside(table_offset, table_entries * 4, "block allocation table")
    blocks_needed = -(-virtual_size // block_size)
    table = unpack_table(
        metadata.read_table(table_offset, blocks_needed * 4, "block allocation table"), 4, big_endian=True
    )
    return VhdLayout(virtual_size, metadata, block_size=block_size, table=table)


class VhdLayout(BlockTableLayout):
    """A dynamic VHD: a BAT of blocks, each a sector bitmap followed by the block's data."""

    format_name = "vhd"

    def __init__(
        self, virtual_size: int, metadata: MetadataReader, *, block_size: int, table: array.array[int]
    ) -> None:
        # qemu refuses a block that runs past the end of the file: no tail of stored data reads as zeros.
        super().__init__("dynamic", virtual_size, metadata, block_size=block_size, stored_unit_size=0)
        self._table = table
        # Each block starts with a sector bitmap, padded to whole sectors; qemu reads past it, as do we.
        self._bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR

    def block_offset(self, index: int) -> int | None:
        entry = self._table[index]
        if entry == UNALLOCATED:
            return None
        data_offset = entry * SECTOR + self._bitmap_size
        file_size = self._metadata.file_size
        if data_offset + self._block_size > file_size:
            # qemu refuses the file too ("free_data_block_offset points after the end of file").
            raise BrokenImageError(
                f"VHD block {index} at offset {entry * SECTOR} runs past the end of the {file_size}-byte file: "
                f"{REUPLOAD_HINT}."
            )
        return data_offset

    def end_of_zero_run(self, index: int, stop: int) -> int:
        return end_of_run(self._table, index, stop, all_ones=True)


def _require_checksum(structure: bytes, checksum_offset: int, what: str) -> None:
    expected = struct.unpack_from(">I", structure, checksum_offset)[0]
    without_checksum = structure[:checksum_offset] + bytes(4) + structure[checksum_offset + 4 :]
    actual = ~sum(without_checksum) & 0xFFFF_FFFF
    if actual != expected:
        raise BrokenImageError(f"The VHD {what} checksum does not match its content: {REUPLOAD_HINT}.")
