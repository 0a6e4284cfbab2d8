"""VMDK, single-file only: monolithicSparse and streamOptimized. Every other layout is refused.

Checked before anything is decoded: the embedded descriptor (create type, exactly one SPARSE extent naming no other
file, no parent), the header version, grain and table sizes, the virtual size, the compression algorithm, the
footer of a stream-optimized file, and a grain directory that fits the file and the table cap with every grain
table (of at most 512 entries, as qemu allows) inside the file and used once. Each grain table entry is vetted when
used: its grain starts inside the file; a compressed grain must inflate to what the disk reads from it.
A standalone text descriptor always names other files (flat or split extents) and is refused.
"""

from __future__ import annotations

import array
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BrokenImageError, UnsupportedImageError
from ..inspection import REUPLOAD_HINT, MetadataReader, is_repeated, printable
from ..layout import Decompressor, Segment, compressed, stored, zero
from ..limits import SECTOR
from ..tables import TableCache, TwoLevelTables, end_of_contiguous_run, end_of_run, unpack_table

HEADER_FORMAT = "<IIIQQQQIQQQ?ccccH"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
GD_AT_END = 0xFFFF_FFFF_FFFF_FFFF
FLAG_ZEROED_GRAIN = 1 << 2
COMPRESSION_NONE = 0
COMPRESSION_DEFLATE = 1
MARKER_END_OF_STREAM = 0
MARKER_FOOTER = 3
GRAIN_ZEROED = 1
MAX_GRAIN_SECTORS = 4096  # 2 MiB grains: the decompressed unit stays small
MAX_ENTRIES_PER_GRAIN_TABLE = 512  # as qemu ("L2 table size too big" beyond); VMware writes 512
# A smaller grain table is charged to the metadata budget as a table of 512 entries: what a pass costs is mostly per
# table (a read, a decode, a lookup), and qemu's one-entry tables made a 2 GiB file take 57 s.
CHARGED_GRAIN_TABLE_BYTES = MAX_ENTRIES_PER_GRAIN_TABLE * 4
SUPPORTED_CREATE_TYPES = ("monolithicSparse", "streamOptimized")
SINGLE_FILE_HINT = (
    "convert the disk to a single-file VMDK (qemu-img convert -O vmdk -o subformat=streamOptimized disk.vmdk "
    "single.vmdk) and upload that"
)
# One extent line, e.g. `RW 20480 SPARSE "disk.vmdk"` or `RW 2048 FLAT "disk-flat.vmdk" 0`, matched on its own.
EXTENT_LINE = re.compile(r'(?:RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)")?(?:\s+(\d+))?')


@dataclass(frozen=True)
class Descriptor:
    create_type: str
    extents: list[tuple[str, str]]  # (extent type, file name)
    parent_file: str | None


def _qemu_value(text: str, key: str) -> str | None:
    """A descriptor value found as qemu finds it: the first occurrence of `key` anywhere (comments included), two
    characters skipped (`="`), up to the next quote. None where qemu finds none."""
    position = text.find(key)
    if position < 0:
        return None
    start = position + len(key) + 2
    end = text.find('"', start)
    return text[start:end] if start < len(text) and end >= 0 else None


def parse_descriptor(text: str) -> Descriptor:
    """The create type, extents and parent of a descriptor, read line by line: linear in its size, whatever it holds.

    qemu reads some keys differently, searching the whole text for their first occurrence, comments included: where
    its reading of the create type would differ, the descriptor is refused, and a parent named anywhere it looks
    makes the disk a child.
    """
    create_type = ""
    parent_file: str | None = None
    extents: list[tuple[str, str]] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        extent = EXTENT_LINE.fullmatch(line)
        if extent:
            extents.append((extent.group(2).upper(), printable((extent.group(3) or "").encode())))
            continue
        key, separator, value = line.partition("=")
        if not separator:
            continue
        key, value = key.strip(), printable(value.strip().strip('"').encode())
        if key == "createType":
            create_type = value
        elif key == "parentFileNameHint":
            parent_file = value
        elif key == "parentCID" and value.lower() != "ffffffff" and parent_file is None:
            parent_file = "(unnamed parent)"
    qemu_create_type = _qemu_value(text, "createType")
    if qemu_create_type is not None and printable(qemu_create_type.encode()) != create_type:
        raise BrokenImageError(
            f"The VMDK descriptor can be read two ways: its createType line says '{create_type or 'nothing'}', "
            f"qemu's search of the text finds '{printable(qemu_create_type.encode())}' first: {REUPLOAD_HINT}."
        )
    if parent_file is None and "parentFileNameHint" in text:
        # qemu takes the first occurrence anywhere as the parent, after '="', up to the next quote.
        hint = text[text.index("parentFileNameHint") + len("parentFileNameHint") + 2 :].split('"', 1)[0]
        parent_file = printable(hint.encode()) or "(unnamed parent)"
    if parent_file is None:
        parent_cid = _qemu_parent_cid(text)
        if parent_cid is not None and parent_cid != 0xFFFF_FFFF:
            parent_file = "(unnamed parent)"
    return Descriptor(create_type=create_type, extents=extents, parent_file=parent_file)


def _qemu_parent_cid(text: str) -> int | None:
    """The parent CID as qemu reads it: hex digits after the first `parentCID` and one more character."""
    position = text.find("parentCID")
    if position < 0:
        return None
    match = re.match(r"\s*(?:0[xX])?([0-9a-fA-F]{1,8})", text[position + len("parentCID") + 1 :])
    return int(match.group(1), 16) if match else None


def _names_another_place(file_name: str) -> bool:
    """A single-file VMDK's extent names the file itself: any directory part means it points elsewhere."""
    return "/" in file_name or "\\" in file_name or file_name in ("", ".", "..") or ":" in file_name


def _refuse_child(descriptor: Descriptor) -> None:
    if descriptor.parent_file is not None:
        raise UnsupportedImageError(
            f"Differencing (child) VMDK images are not supported; this one depends on '{descriptor.parent_file}': "
            f"{SINGLE_FILE_HINT}."
        )


def open_vmdk_descriptor(metadata: MetadataReader) -> VmdkLayout:
    """A text descriptor on its own: its data lives in other files, which an import never opens."""
    text = metadata.read(0, min(metadata.file_size, metadata.limits.max_header_bytes), "descriptor")
    descriptor = parse_descriptor(text.decode("utf-8", errors="replace"))
    _refuse_child(descriptor)
    names = sorted({name for _type, name in descriptor.extents if name})
    shown = ", ".join(f"'{name}'" for name in names[:5]) or "no extent"
    outside = [name for name in names if _names_another_place(name)]
    if outside:
        raise BrokenImageError(
            f"The VMDK descriptor names the extent file '{outside[0]}' outside the upload, which is not allowed: "
            f"{SINGLE_FILE_HINT}."
        )
    raise UnsupportedImageError(
        f"VMDK '{descriptor.create_type or 'unknown'}' images are not supported, only single-file monolithicSparse "
        f"and streamOptimized: this descriptor keeps the disk in other files ({shown}); {SINGLE_FILE_HINT}."
    )


def open_vmdk(metadata: MetadataReader) -> VmdkLayout:
    if metadata.file_size < SECTOR:
        raise BrokenImageError(f"The file starts like a VMDK image but is shorter than a VMDK header: {REUPLOAD_HINT}.")
    header = _parse_header(metadata.read(0, HEADER_SIZE, "header"))
    if not 1 <= header.version <= 3:
        raise UnsupportedImageError(
            f"VMDK sparse extent version {header.version} is not supported (1 to 3 are): {SINGLE_FILE_HINT}."
        )
    if header.capacity == 0 and header.descriptor_offset:
        raise BrokenImageError(
            "The sparse VMDK claims a capacity of 0 and embeds a descriptor, which can be read two ways: as an empty "
            "disk, or (as qemu reads it) as a descriptor file whose extents name other files. Neither is a disk to "
            f"import: {SINGLE_FILE_HINT}."
        )
    descriptor = _embedded_descriptor(metadata, header)
    _refuse_child(descriptor)
    if descriptor.create_type not in SUPPORTED_CREATE_TYPES:
        if not descriptor.create_type:
            raise UnsupportedImageError(
                "This VMDK file has no descriptor: it is one extent of a multi-file VMDK (e.g. twoGbMaxExtentSparse), "
                f"not a whole disk; {SINGLE_FILE_HINT}."
            )
        raise UnsupportedImageError(
            f"VMDK '{descriptor.create_type}' images are not supported, only monolithicSparse and streamOptimized: "
            f"{SINGLE_FILE_HINT}."
        )
    for _extent_type, file_name in descriptor.extents:
        if _names_another_place(file_name):
            raise BrokenImageError(
                f"The VMDK descriptor names the extent file '{file_name}' outside the upload, which is not allowed: "
                f"{SINGLE_FILE_HINT}."
            )
    if len(descriptor.extents) != 1 or descriptor.extents[0][0] != "SPARSE":
        raise UnsupportedImageError(
            f"A {descriptor.create_type} VMDK must have exactly one SPARSE extent, this one lists "
            f"{', '.join(extent_type for extent_type, _ in descriptor.extents) or 'none'}: {SINGLE_FILE_HINT}."
        )

    if header.gd_offset == GD_AT_END:
        header = _footer_header(metadata)
    if header.compress_algorithm not in (COMPRESSION_NONE, COMPRESSION_DEFLATE):
        raise UnsupportedImageError(
            f"VMDK compression algorithm {header.compress_algorithm} is not supported, only deflate: "
            f"{SINGLE_FILE_HINT}."
        )
    grain_sectors = header.grain_size
    if not 1 <= grain_sectors <= MAX_GRAIN_SECTORS or grain_sectors & (grain_sectors - 1):
        raise BrokenImageError(
            f"The VMDK grain size of {grain_sectors} sectors is not a power of two up to {MAX_GRAIN_SECTORS}: "
            f"{REUPLOAD_HINT}."
        )
    if not 1 <= header.entries_per_grain_table <= MAX_ENTRIES_PER_GRAIN_TABLE:
        raise BrokenImageError(
            f"The VMDK header gives {header.entries_per_grain_table} entries per grain table: {REUPLOAD_HINT}."
        )
    virtual_size = header.capacity * SECTOR
    metadata.require_virtual_size(virtual_size)
    grain_table_span = grain_sectors * SECTOR * header.entries_per_grain_table
    directory_entries = -(-virtual_size // grain_table_span)
    directory = unpack_table(
        metadata.read_table(header.gd_offset * SECTOR, directory_entries * 4, "grain directory"), 4, big_endian=False
    )
    _vet_grain_directory(metadata, directory, header.entries_per_grain_table * 4)
    return VmdkLayout(
        descriptor.create_type,
        virtual_size,
        metadata,
        grain_size=grain_sectors * SECTOR,
        entries_per_grain_table=header.entries_per_grain_table,
        directory=directory,
        compressed_grains=header.compress_algorithm == COMPRESSION_DEFLATE,
        has_markers=bool(header.flags & (1 << 17)),
        zeroed_grains=bool(header.flags & FLAG_ZEROED_GRAIN),
    )


@dataclass(frozen=True)
class SparseHeader:
    version: int
    flags: int
    capacity: int
    grain_size: int
    descriptor_offset: int
    descriptor_size: int
    entries_per_grain_table: int
    gd_offset: int
    compress_algorithm: int


def _parse_header(data: bytes) -> SparseHeader:
    fields = struct.unpack_from(HEADER_FORMAT, data)
    return SparseHeader(
        version=fields[1],
        flags=fields[2],
        capacity=fields[3],
        grain_size=fields[4],
        descriptor_offset=fields[5],
        descriptor_size=fields[6],
        entries_per_grain_table=fields[7],
        gd_offset=fields[9],
        compress_algorithm=fields[16],
    )


def _embedded_descriptor(metadata: MetadataReader, header: SparseHeader) -> Descriptor:
    if not header.descriptor_offset or not header.descriptor_size:
        return Descriptor(create_type="", extents=[], parent_file=None)
    size = header.descriptor_size * SECTOR
    if size > metadata.limits.max_header_bytes:
        raise BrokenImageError(
            f"The embedded VMDK descriptor claims {size} bytes, more than the {metadata.limits.max_header_bytes} "
            f"allowed: {REUPLOAD_HINT}."
        )
    raw = metadata.read(header.descriptor_offset * SECTOR, size, "embedded descriptor")
    return parse_descriptor(raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"))


def _footer_header(metadata: MetadataReader) -> SparseHeader:
    """A stream-optimized file written in one pass keeps its grain directory offset in a footer before the end."""
    if metadata.file_size < 3 * SECTOR:
        raise BrokenImageError(f"The stream-optimized VMDK has no footer: {REUPLOAD_HINT}.")
    if metadata.file_size % SECTOR:
        rounded = -(-metadata.file_size // SECTOR) * SECTOR
        raise BrokenImageError(
            f"The stream-optimized VMDK is {metadata.file_size} bytes, not a whole number of sectors, so its footer "
            f"can be read two ways: at offset {metadata.file_size - 3 * SECTOR} (the file's last 1536 bytes) or at "
            f"{rounded - 3 * SECTOR} (the size rounded up to a sector, as qemu reads it): the upload is truncated "
            "or corrupt; upload the whole file again."
        )
    tail = metadata.read(metadata.file_size - 3 * SECTOR, 3 * SECTOR, "footer")
    _footer_sectors, footer_size, footer_type = struct.unpack_from("<QII", tail, 0)
    _end_sectors, end_size, end_type = struct.unpack_from("<QII", tail, 2 * SECTOR)
    footer = _parse_header(tail[SECTOR : SECTOR + HEADER_SIZE])
    if (
        footer_size != 0
        or footer_type != MARKER_FOOTER
        or end_size != 0
        or end_type != MARKER_END_OF_STREAM
        or tail[SECTOR : SECTOR + 4] != b"KDMV"
        or footer.gd_offset == GD_AT_END
    ):
        raise BrokenImageError(
            "The stream-optimized VMDK does not end with a valid footer: the upload is truncated or corrupt; "
            "upload the whole file again."
        )
    return footer


def _vet_grain_directory(metadata: MetadataReader, directory: array.array[int], grain_table_bytes: int) -> None:
    seen: set[int] = set()
    for sector in directory:
        if not sector:
            continue
        metadata.require_inside(sector * SECTOR, grain_table_bytes, "grain table")
        if is_repeated(seen, sector):
            raise BrokenImageError(
                f"Two VMDK grain directory entries share the grain table at sector {sector}: {REUPLOAD_HINT}."
            )


class VmdkLayout:
    format_name = "vmdk"

    def __init__(
        self,
        subformat: str,
        virtual_size: int,
        metadata: MetadataReader,
        *,
        grain_size: int,
        entries_per_grain_table: int,
        directory: array.array[int],
        compressed_grains: bool,
        has_markers: bool,
        zeroed_grains: bool,
    ) -> None:
        self.subformat = subformat
        self.virtual_size = virtual_size
        self._metadata = metadata
        self._grain_size = grain_size
        self.stored_unit_size = grain_size
        self._compressed_grains = compressed_grains
        self._zeroed_grains = zeroed_grains
        self._decompress = _grain_decompressor(grain_size, has_markers, grain_size)
        # The grain holding the end of the disk need only inflate to what the disk uses of it, as qemu reads it.
        last_grain_used = virtual_size - (virtual_size - 1) // grain_size * grain_size if virtual_size else grain_size
        self._decompress_last = _grain_decompressor(grain_size, has_markers, last_grain_used)
        grain_tables = TableCache(
            metadata,
            table_bytes=entries_per_grain_table * 4,
            entry_size=4,
            big_endian=False,
            what="grain table",
            charged_bytes=CHARGED_GRAIN_TABLE_BYTES,
        )
        self._tables = TwoLevelTables(
            directory,
            grain_tables,
            unit_size=grain_size,
            units_per_table=entries_per_grain_table,
            offset_bits=0xFFFF_FFFF,
            offset_scale=SECTOR,
        )

    def units(self, start: int, end: int) -> Iterator[Segment]:
        return self._tables.units(start, end, self._grain_runs)

    def _grain_runs(self, span_start: int, grain_table: array.array[int], first: int, last: int) -> Iterator[Segment]:
        """Grains `first` to `last` of one grain table, as runs: zeros together, file-contiguous grains together."""
        grain_size = self._grain_size
        grain_sectors = grain_size // SECTOR
        index = first
        while index < last:
            grain_sector = grain_table[index]
            virtual_offset = span_start + index * grain_size
            run_end = index + 1
            if self._reads_as_zeros(grain_sector):
                # With the zeroed-grain flag, entry 1 means zeros like 0 does: both are skipped as one run.
                run_end = end_of_run(
                    grain_table, run_end, last, ignored_bits=GRAIN_ZEROED if self._zeroed_grains else 0
                )
                yield zero(virtual_offset, (run_end - index) * grain_size)
            elif self._compressed_grains:
                grain_offset = self._grain_offset(grain_sector)
                stored_length = min(2 * grain_size + SECTOR, self._metadata.file_size - grain_offset)
                last_grain = virtual_offset + grain_size >= self.virtual_size
                decompress = self._decompress_last if last_grain else self._decompress
                yield compressed(virtual_offset, grain_size, grain_offset, stored_length, decompress)
            else:
                run_end = end_of_contiguous_run(grain_table, index, last, first_value=grain_sector, step=grain_sectors)
                self._grain_offset(grain_sector + (run_end - index - 1) * grain_sectors)
                yield stored(virtual_offset, (run_end - index) * grain_size, self._grain_offset(grain_sector))
            index = run_end

    def _reads_as_zeros(self, grain_sector: int) -> bool:
        return not grain_sector or (grain_sector == GRAIN_ZEROED and self._zeroed_grains)

    def _grain_offset(self, grain_sector: int) -> int:
        grain_offset = grain_sector * SECTOR
        file_size = self._metadata.file_size
        if grain_offset >= file_size:
            raise BrokenImageError(
                f"A VMDK grain points to offset {grain_offset}, past the end of the {file_size}-byte file: "
                f"{REUPLOAD_HINT}."
            )
        return grain_offset


def _grain_decompressor(grain_size: int, has_markers: bool, least_length: int) -> Decompressor:
    """Inflates one grain; a stream cut short, or inflating to fewer than `least_length` bytes, is refused (qemu fails
    the read of such a grain: padding it with zeros would import a disk qemu cannot read)."""

    def decompress(stored_bytes: bytes) -> bytes:
        payload = stored_bytes
        if has_markers:
            if len(stored_bytes) < 12:
                raise BrokenImageError(f"A compressed VMDK grain is cut short by the end of the file: {REUPLOAD_HINT}.")
            (payload_size,) = struct.unpack_from("<I", stored_bytes, 8)
            if not 0 < payload_size <= len(stored_bytes) - 12:
                raise BrokenImageError(
                    f"A compressed VMDK grain claims {payload_size} bytes, which do not fit where it is stored: "
                    f"{REUPLOAD_HINT}."
                )
            payload = stored_bytes[12 : 12 + payload_size]
        try:
            inflater = zlib.decompressobj()
            inflated = inflater.decompress(payload, grain_size)
            if not inflater.eof and inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
                raise BrokenImageError(f"A compressed VMDK grain inflates to more than one grain: {REUPLOAD_HINT}.")
        except zlib.error as error:
            raise BrokenImageError(f"A compressed VMDK grain is corrupt ({error}): {REUPLOAD_HINT}.") from error
        if not inflater.eof:
            raise BrokenImageError(
                f"A compressed VMDK grain's deflate stream is cut short after {len(inflated)} bytes: {REUPLOAD_HINT}."
            )
        if len(inflated) < least_length:
            raise BrokenImageError(
                f"A compressed VMDK grain inflates to {len(inflated)} bytes, fewer than the {least_length} the disk "
                f"reads from it: {REUPLOAD_HINT}."
            )
        return inflated + bytes(grain_size - len(inflated))

    return decompress
