"""VHDX, fixed and dynamic; differencing disks and files with a log to replay are refused.

Checked before anything is decoded: the file identifier, the current header (CRC-32C, version, an empty log), the
region table (CRC-32C, regions inside the file, no unknown required region), the metadata table (items inside the
region, each region and item listed once, no unknown required item, no parent), block and sector sizes, the virtual
size, and a BAT that fits its region, the file and the table cap. Each BAT entry is vetted when used: a known state,
a block inside the file and clear of the headers, log, metadata and BAT (qemu's checks).
"""

from __future__ import annotations

import array
import struct
import uuid

from ..crc32c import crc32c
from ..errors import BrokenImageError, UnsupportedImageError
from ..inspection import REUPLOAD_HINT, MetadataReader
from ..limits import KIB, MIB, SECTOR
from ..tables import BlockTableLayout, end_of_run, unpack_table

HEADER_OFFSETS = (64 * KIB, 128 * KIB)
HEADER_SIZE = 4 * KIB
REGION_TABLE_OFFSET = 192 * KIB
REGION_TABLE_SIZE = 64 * KIB
MAX_TABLE_ENTRIES = 2047
METADATA_TABLE_HEADER_SIZE = 32

BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PAGE_83_DATA = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
LOGICAL_SECTOR_SIZE = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
PHYSICAL_SECTOR_SIZE = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
KNOWN_METADATA = {FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE_83_DATA, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE}

FILE_PARAMETER_LEAVE_BLOCKS_ALLOCATED = 1
FILE_PARAMETER_HAS_PARENT = 2
METADATA_IS_REQUIRED = 4

PAYLOAD_NOT_PRESENT = 0
PAYLOAD_UNDEFINED = 1
PAYLOAD_ZERO = 2
PAYLOAD_UNMAPPED = 3
PAYLOAD_UNMAPPED_DRAFT = 5  # "unmapped" in the draft specification (v0.95); qemu reads it as zeros too
PAYLOAD_FULLY_PRESENT = 6
PAYLOAD_PARTIALLY_PRESENT = 7
READS_AS_ZEROS = {PAYLOAD_NOT_PRESENT, PAYLOAD_UNDEFINED, PAYLOAD_ZERO, PAYLOAD_UNMAPPED, PAYLOAD_UNMAPPED_DRAFT}
BAT_OFFSET_MASK = ~(MIB - 1) & 0xFFFF_FFFF_FFFF_FFFF
# States 0 to 3 (not present, undefined, zero, unmapped) differ only in these bits: a run of them is one search.
ZERO_STATE_BITS = 0b011

CHILD_HINT = (
    "Differencing (child) VHDX images are not supported: merge the disk into its parent (Merge-VHD) or convert it "
    "(qemu-img convert -O vhdx child.vhdx flat.vhdx), and upload that."
)


def open_vhdx(metadata: MetadataReader) -> VhdxLayout:
    if metadata.file_size < REGION_TABLE_OFFSET + REGION_TABLE_SIZE:
        raise BrokenImageError(
            f"The file starts like a VHDX image but is too short to hold its headers: {REUPLOAD_HINT}."
        )
    log_region = _current_header(metadata)
    regions = _regions(metadata)
    if BAT_REGION not in regions or METADATA_REGION not in regions:
        raise BrokenImageError(f"The VHDX region table lacks the BAT or the metadata region: {REUPLOAD_HINT}.")
    items = _metadata_items(metadata, *regions[METADATA_REGION])
    if PARENT_LOCATOR in items:
        raise UnsupportedImageError(CHILD_HINT)
    for name, item in ((FILE_PARAMETERS, 8), (VIRTUAL_DISK_SIZE, 8), (LOGICAL_SECTOR_SIZE, 4)):
        if name not in items or len(items[name]) < item:
            raise BrokenImageError(f"The VHDX metadata lacks a required item ({name}): {REUPLOAD_HINT}.")
    block_size, parameter_flags = struct.unpack_from("<II", items[FILE_PARAMETERS])
    (virtual_size,) = struct.unpack_from("<Q", items[VIRTUAL_DISK_SIZE])
    (logical_sector_size,) = struct.unpack_from("<I", items[LOGICAL_SECTOR_SIZE])
    if parameter_flags & FILE_PARAMETER_HAS_PARENT:
        raise UnsupportedImageError(CHILD_HINT)
    if not MIB <= block_size <= 256 * MIB or block_size & (block_size - 1):
        raise BrokenImageError(
            f"The VHDX block size {block_size} is not a power of two from 1 to 256 MiB: {REUPLOAD_HINT}."
        )
    if logical_sector_size not in (SECTOR, 4096):
        raise BrokenImageError(
            f"The VHDX logical sector size {logical_sector_size} is neither 512 nor 4096: {REUPLOAD_HINT}."
        )
    metadata.require_virtual_size(virtual_size)

    # A sector bitmap entry follows every `chunk_ratio` payload entries in the BAT.
    chunk_ratio = (1 << 23) * logical_sector_size // block_size
    payload_blocks = -(-virtual_size // block_size)
    bat_entries = payload_blocks + (payload_blocks - 1) // chunk_ratio if payload_blocks else 0
    bat_offset, bat_length = regions[BAT_REGION]
    if bat_entries * 8 > bat_length:
        raise BrokenImageError(
            f"The VHDX BAT region ({bat_length} bytes) is too small for {payload_blocks} blocks: {REUPLOAD_HINT}."
        )
    bat = unpack_table(metadata.read_table(bat_offset, bat_entries * 8, "BAT"), 8, big_endian=False)
    subformat = "fixed" if parameter_flags & FILE_PARAMETER_LEAVE_BLOCKS_ALLOCATED else "dynamic"
    # Where no payload block may lie, as qemu checks: the headers, the log, the metadata and the BAT.
    reserved = [(0, MIB), log_region, regions[METADATA_REGION], regions[BAT_REGION]]
    return VhdxLayout(
        subformat,
        virtual_size // SECTOR * SECTOR,  # qemu counts the disk in whole sectors, rounding down
        metadata,
        block_size=block_size,
        chunk_ratio=chunk_ratio,
        bat=bat,
        reserved=[(offset, offset + length) for offset, length in reserved if length],
    )


class VhdxLayout(BlockTableLayout):
    format_name = "vhdx"

    def __init__(
        self,
        subformat: str,
        virtual_size: int,
        metadata: MetadataReader,
        *,
        block_size: int,
        chunk_ratio: int,
        bat: array.array[int],
        reserved: list[tuple[int, int]],
    ) -> None:
        # qemu refuses a block that runs past the end of the file: no tail of stored data reads as zeros.
        super().__init__(subformat, virtual_size, metadata, block_size=block_size, stored_unit_size=0)
        self._chunk_ratio = chunk_ratio
        self._bat = bat
        self._reserved = reserved

    def block_offset(self, index: int) -> int | None:
        entry = self._payload_entry(index)
        state = entry & 7
        if state in READS_AS_ZEROS:
            return None
        if state == PAYLOAD_PARTIALLY_PRESENT:
            raise UnsupportedImageError(CHILD_HINT)
        block_offset = entry & BAT_OFFSET_MASK
        file_size = self._metadata.file_size
        # The last block may be partial: qemu wants what the disk uses of it inside the file.
        block_length = min(self._block_size, self.virtual_size - index * self._block_size)
        if state != PAYLOAD_FULLY_PRESENT or block_offset == 0 or block_offset + block_length > file_size:
            raise BrokenImageError(
                f"VHDX block {index} has state {state} at offset {block_offset}, which the format does not allow "
                f"in a {file_size}-byte file: {REUPLOAD_HINT}."
            )
        for region_start, region_end in self._reserved:
            if block_offset < region_end and region_start < block_offset + block_length:
                raise BrokenImageError(
                    f"VHDX block {index} at offset {block_offset} overlaps the headers, log, metadata or BAT "
                    f"(bytes {region_start} to {region_end}), which qemu refuses too: {REUPLOAD_HINT}."
                )
        return block_offset

    def end_of_zero_run(self, index: int, stop: int) -> int:
        """The payload entries between two sector bitmap entries lie side by side in the BAT: each such stretch is
        searched at memory speed for an entry other than states 0 to 3 without an offset; an entry the search stops
        at that still reads as zeros (state 5, or a zero state with stray offset bits) is looked at on its own.
        """
        ratio = self._chunk_ratio
        while index < stop:
            stretch_end = min(stop, (index // ratio + 1) * ratio)
            position = index + index // ratio
            found = end_of_run(self._bat, position, position + stretch_end - index, ignored_bits=ZERO_STATE_BITS)
            index += found - position
            if index < stretch_end:
                if self._bat[found] & 7 not in READS_AS_ZEROS:
                    return index
                index += 1
        return stop

    def _payload_entry(self, block_index: int) -> int:
        # A sector bitmap entry follows every `chunk_ratio` payload entries.
        return self._bat[block_index + block_index // self._chunk_ratio]


def _current_header(metadata: MetadataReader) -> tuple[int, int]:
    """The log region (offset, length) of the valid header with the highest sequence number, as the VHDX
    specification and qemu choose it."""
    best: tuple[int, bytes] | None = None
    for offset in HEADER_OFFSETS:
        header = metadata.read(offset, HEADER_SIZE, "header")
        if header[:4] != b"head" or not _checksum_matches(header):
            continue
        (sequence,) = struct.unpack_from("<Q", header, 8)
        if best is None or sequence > best[0]:
            best = (sequence, header)
    if best is None:
        raise BrokenImageError(f"Neither VHDX header has a valid signature and checksum: {REUPLOAD_HINT}.")
    header = best[1]
    log_guid = header[48:64]
    (version,) = struct.unpack_from("<H", header, 66)
    if version != 1:
        raise UnsupportedImageError(
            f"VHDX version {version} is not supported, only version 1 is: convert the image and upload that."
        )
    if any(log_guid):
        raise BrokenImageError(
            "The VHDX file has a log that was never replayed (it was not closed cleanly): attach and detach it once "
            "in Hyper-V, or convert it (qemu-img convert -O vhdx in.vhdx out.vhdx), then upload it."
        )
    log_length, log_offset = struct.unpack_from("<IQ", header, 68)
    return log_offset, log_length


def _regions(metadata: MetadataReader) -> dict[uuid.UUID, tuple[int, int]]:
    table = metadata.read(REGION_TABLE_OFFSET, REGION_TABLE_SIZE, "region table")
    if table[:4] != b"regi" or not _checksum_matches(table):
        raise BrokenImageError(f"The VHDX region table has a bad signature or checksum: {REUPLOAD_HINT}.")
    (entry_count,) = struct.unpack_from("<I", table, 8)
    if entry_count > MAX_TABLE_ENTRIES:
        raise BrokenImageError(f"The VHDX region table claims {entry_count} entries: {REUPLOAD_HINT}.")
    regions: dict[uuid.UUID, tuple[int, int]] = {}
    for number in range(entry_count):
        position = 16 + number * 32
        guid = uuid.UUID(bytes_le=table[position : position + 16])
        offset, length, required = struct.unpack_from("<QII", table, position + 16)
        if guid not in (BAT_REGION, METADATA_REGION):
            if required & 1:
                raise UnsupportedImageError(
                    f"The VHDX file needs a region this service does not know ({guid}): convert the image "
                    "(qemu-img convert -O vhdx in.vhdx out.vhdx) and upload that."
                )
            continue
        if offset % MIB or offset < MIB:
            raise BrokenImageError(
                f"The VHDX region {guid} starts at offset {offset}, not a whole MiB past the headers: {REUPLOAD_HINT}."
            )
        metadata.require_inside(offset, length, "region")
        if guid in regions:
            # qemu refuses a second entry for one region; keeping either would be a guess.
            raise BrokenImageError(f"The VHDX region table lists region {guid} twice: {REUPLOAD_HINT}.")
        regions[guid] = (offset, length)
    return regions


def _metadata_items(metadata: MetadataReader, region_offset: int, region_length: int) -> dict[uuid.UUID, bytes]:
    table_length = min(region_length, 64 * KIB)
    if table_length < METADATA_TABLE_HEADER_SIZE:
        raise BrokenImageError(
            f"The VHDX metadata region ({region_length} bytes) is too short to hold its table header: {REUPLOAD_HINT}."
        )
    table = metadata.read(region_offset, table_length, "metadata table")
    if table[:8] != b"metadata":
        raise BrokenImageError(f"The VHDX metadata table has no 'metadata' signature: {REUPLOAD_HINT}.")
    (entry_count,) = struct.unpack_from("<H", table, 10)
    if entry_count > MAX_TABLE_ENTRIES or 32 + entry_count * 32 > table_length:
        raise BrokenImageError(f"The VHDX metadata table claims {entry_count} entries: {REUPLOAD_HINT}.")
    items: dict[uuid.UUID, bytes] = {}
    for number in range(entry_count):
        position = 32 + number * 32
        guid = uuid.UUID(bytes_le=table[position : position + 16])
        offset, length, flags = struct.unpack_from("<III", table, position + 16)
        if guid in items:
            # qemu refuses a second entry for one item; keeping either would be a guess.
            raise BrokenImageError(f"The VHDX metadata table lists item {guid} twice: {REUPLOAD_HINT}.")
        if guid == PARENT_LOCATOR:
            items[guid] = b""
            continue
        if guid not in KNOWN_METADATA:
            if flags & METADATA_IS_REQUIRED:
                raise UnsupportedImageError(
                    f"The VHDX file needs a metadata item this service does not know ({guid}): convert the image "
                    "(qemu-img convert -O vhdx in.vhdx out.vhdx) and upload that."
                )
            continue
        if length > 4 * KIB or offset + length > region_length or (length and offset < 64 * KIB):
            raise BrokenImageError(f"The VHDX metadata item {guid} lies outside its region: {REUPLOAD_HINT}.")
        items[guid] = metadata.read(region_offset + offset, length, "metadata item")
    return items


def _checksum_matches(structure: bytes) -> bool:
    expected: int = struct.unpack_from("<I", structure, 4)[0]
    return crc32c(structure[:4] + bytes(4) + structure[8:]) == expected
