"""qcow2, versions 2 and 3, with zlib or zstd compressed clusters.

Checked before anything is decoded: the version, a backing file, an external data file, encryption, every
incompatible feature bit, the cluster size, the virtual size, and the L1 table (size against the virtual size and
the table cap, inside the file, every L2 table aligned, inside the file and used once). Each L2 table is vetted
when it is first read: data clusters aligned and inside the file, no zero flag in a version 2 image.
"""

from __future__ import annotations

import array
import struct
import zlib
from collections.abc import Iterator

from ..errors import BrokenImageError, UnsupportedImageError
from ..inspection import REUPLOAD_HINT, MetadataReader, is_repeated, printable
from ..layout import Decompressor, Segment, compressed, stored, zero
from ..limits import SECTOR
from ..tables import TableCache, TwoLevelTables, end_of_contiguous_run, end_of_run, unpack_table
from ..zstd import ZstdDecompressionError, decompress_zstd

MAGIC = b"QFI\xfb"
VERSION_2_HEADER_LENGTH = 72
VERSION_3_HEADER_LENGTH = 104
MAX_SNAPSHOTS = 65_536
SNAPSHOT_HEADER_SIZE = 40  # the fixed part of each snapshot table entry
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21

OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00  # bits 9-55 of L1 and standard L2 entries
COMPRESSED_FLAG = 1 << 62
COPIED_FLAG = 1 << 63
ZERO_FLAG = 1

INCOMPATIBLE_DIRTY = 1 << 0
INCOMPATIBLE_CORRUPT = 1 << 1
INCOMPATIBLE_DATA_FILE = 1 << 2
INCOMPATIBLE_COMPRESSION_TYPE = 1 << 3
INCOMPATIBLE_EXTENDED_L2 = 1 << 4
KNOWN_INCOMPATIBLE = (
    INCOMPATIBLE_DIRTY
    | INCOMPATIBLE_CORRUPT
    | INCOMPATIBLE_DATA_FILE
    | INCOMPATIBLE_COMPRESSION_TYPE
    | INCOMPATIBLE_EXTENDED_L2
)

EXTENSION_END = 0x00000000
EXTENSION_DATA_FILE = 0x44415441
COMPRESSION_ZLIB = 0
COMPRESSION_ZSTD = 1

FLATTEN_HINT = "upload a flattened image (qemu-img convert -O qcow2 in.qcow2 flat.qcow2)"


def open_qcow2(metadata: MetadataReader) -> Qcow2Layout:
    if metadata.file_size < VERSION_2_HEADER_LENGTH:
        raise BrokenImageError(
            f"The file starts like a qcow2 image but is shorter than a qcow2 header: {REUPLOAD_HINT}."
        )
    fixed = metadata.read(0, VERSION_2_HEADER_LENGTH, "header")
    version = struct.unpack_from(">I", fixed, 4)[0]
    if version == 1:
        raise UnsupportedImageError(
            "qcow (version 1) images are not supported: convert the image to qcow2 "
            "(qemu-img convert -O qcow2 in.qcow out.qcow2) and upload that."
        )
    if version not in (2, 3):
        raise UnsupportedImageError(
            f"qcow2 version {version} is not supported, only versions 2 and 3 are: convert the image "
            "(qemu-img convert -O qcow2 -o compat=1.1 in.img out.qcow2) and upload that."
        )
    (
        backing_file_offset,
        backing_file_size,
        cluster_bits,
        virtual_size,
        encryption_method,
        l1_entries,
        l1_offset,
        refcount_table_offset,
        refcount_table_clusters,
        snapshot_count,
        snapshots_offset,
    ) = struct.unpack_from(">QIIQIIQQIIQ", fixed, 8)

    if backing_file_offset:
        name = _backing_file_name(metadata, backing_file_offset, backing_file_size)
        raise BrokenImageError(f"qcow2 backing file {name} is not allowed: {FLATTEN_HINT}.")
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise BrokenImageError(
            f"The qcow2 header gives a cluster size of 2^{cluster_bits} bytes, outside the 512 B to 2 MiB qemu allows: "
            f"{REUPLOAD_HINT}."
        )
    cluster_size = 1 << cluster_bits

    incompatible_features = 0
    header_length = VERSION_2_HEADER_LENGTH
    compression_type = COMPRESSION_ZLIB
    if version == 3:
        if metadata.file_size < VERSION_3_HEADER_LENGTH:
            raise BrokenImageError(f"The qcow2 version 3 header is cut short: {REUPLOAD_HINT}.")
        version_3 = metadata.read(VERSION_2_HEADER_LENGTH, VERSION_3_HEADER_LENGTH - VERSION_2_HEADER_LENGTH, "header")
        incompatible_features, _compatible, _autoclear, refcount_order, header_length = struct.unpack_from(
            ">QQQII", version_3
        )
        if not VERSION_3_HEADER_LENGTH <= header_length <= min(cluster_size, metadata.limits.max_header_bytes):
            raise BrokenImageError(f"The qcow2 header claims a length of {header_length} bytes: {REUPLOAD_HINT}.")
        if refcount_order > 6:
            raise BrokenImageError(
                f"The qcow2 header gives refcount order {refcount_order} (at most 6): {REUPLOAD_HINT}."
            )
        if header_length > VERSION_3_HEADER_LENGTH:
            compression_type = metadata.read(VERSION_3_HEADER_LENGTH, 1, "header")[0]

    data_file_name = _walk_extensions(metadata, header_length, cluster_size)
    if incompatible_features & INCOMPATIBLE_DATA_FILE or data_file_name is not None:
        shown = f"'{data_file_name}'" if data_file_name else "(unnamed)"
        raise BrokenImageError(
            f"qcow2 external data file {shown} is not allowed: the data must be inside the uploaded file; "
            "upload a self-contained image (qemu-img convert -O qcow2 in.qcow2 flat.qcow2)."
        )
    if incompatible_features & INCOMPATIBLE_CORRUPT:
        raise BrokenImageError(
            "The qcow2 image is marked corrupt: repair it (qemu-img check -r all image.qcow2) or export it again, "
            "then upload it."
        )
    unknown = incompatible_features & ~KNOWN_INCOMPATIBLE
    if unknown:
        bits = ", ".join(str(bit) for bit in range(64) if unknown >> bit & 1)
        raise UnsupportedImageError(
            f"The qcow2 image uses incompatible feature bits this service does not know ({bits}): convert it "
            "(qemu-img convert -O qcow2 -o compat=1.1 in.qcow2 out.qcow2) and upload that."
        )
    if incompatible_features & INCOMPATIBLE_EXTENDED_L2:
        raise UnsupportedImageError(
            "qcow2 images with extended L2 entries (subclusters) are not supported: convert the image "
            "(qemu-img convert -O qcow2 -o extended_l2=off in.qcow2 out.qcow2) and upload that."
        )
    if bool(incompatible_features & INCOMPATIBLE_COMPRESSION_TYPE) != (compression_type != COMPRESSION_ZLIB):
        raise BrokenImageError(
            f"The qcow2 header names compression type {compression_type} but its feature bits disagree: "
            f"{REUPLOAD_HINT}."
        )
    if compression_type not in (COMPRESSION_ZLIB, COMPRESSION_ZSTD):
        raise UnsupportedImageError(
            f"qcow2 compression type {compression_type} is not supported, only zlib and zstd are: convert the image "
            "(qemu-img convert -O qcow2 in.qcow2 out.qcow2) and upload that."
        )
    if encryption_method:
        raise UnsupportedImageError(
            "Encrypted qcow2 images (AES or LUKS) are not supported: upload a decrypted image "
            "(qemu-img convert -O qcow2 with the key, to an unencrypted qcow2)."
        )

    metadata.require_virtual_size(virtual_size)
    if refcount_table_clusters == 0:
        raise BrokenImageError(
            f"The qcow2 header gives a refcount table of 0 clusters, which qemu refuses too: {REUPLOAD_HINT}."
        )
    _require_table(
        metadata, refcount_table_offset, refcount_table_clusters * cluster_size, cluster_size, "refcount table"
    )
    if snapshot_count > MAX_SNAPSHOTS:
        raise BrokenImageError(
            f"The qcow2 header claims {snapshot_count} snapshots, more than the {MAX_SNAPSHOTS} qemu allows: "
            f"{REUPLOAD_HINT}."
        )
    if snapshot_count:
        # Each snapshot takes at least its fixed header: the table must have room for all of them in the file.
        _require_table(
            metadata, snapshots_offset, snapshot_count * SNAPSHOT_HEADER_SIZE, cluster_size, "snapshot table"
        )

    l2_entries = cluster_size // 8
    l1_span = cluster_size * l2_entries
    l1_entries_needed = -(-virtual_size // l1_span)
    if l1_entries < l1_entries_needed:
        raise BrokenImageError(
            f"The qcow2 L1 table has {l1_entries} entries but the {virtual_size}-byte disk needs {l1_entries_needed}: "
            f"{REUPLOAD_HINT}."
        )
    _require_table(metadata, l1_offset, l1_entries * 8, cluster_size, "L1 table")
    l1_table = unpack_table(metadata.read_table(l1_offset, l1_entries_needed * 8, "L1 table"), 8, big_endian=True)
    _vet_l1_table(metadata, l1_table, cluster_size)
    return Qcow2Layout(
        metadata,
        # qemu counts the disk in whole sectors, rounding the header's size down.
        virtual_size=virtual_size // SECTOR * SECTOR,
        version=version,
        cluster_bits=cluster_bits,
        l1_table=l1_table,
        compression_type=compression_type,
    )


class Qcow2Layout:
    format_name = "qcow2"

    def __init__(
        self,
        metadata: MetadataReader,
        *,
        virtual_size: int,
        version: int,
        cluster_bits: int,
        l1_table: array.array[int],
        compression_type: int,
    ) -> None:
        self.subformat = f"v{version}"
        self.virtual_size = virtual_size
        self._metadata = metadata
        self._version = version
        self._cluster_bits = cluster_bits
        self._cluster_size = 1 << cluster_bits
        self.stored_unit_size = self._cluster_size
        # Bits that do not stop a run of entries reading as zeros: COPIED, and the zero flag where version 3 has it
        # (in a version 2 image the flag stops the run, and the entry is refused).
        self._zero_run_bits = COPIED_FLAG | (ZERO_FLAG if version >= 3 else 0)
        # An L1 entry whose offset bits are clear names no L2 table, whatever its other bits.
        self._tables = TwoLevelTables(
            l1_table,
            TableCache(metadata, table_bytes=self._cluster_size, entry_size=8, big_endian=True, what="L2 table"),
            unit_size=self._cluster_size,
            units_per_table=self._cluster_size // 8,
            offset_bits=OFFSET_MASK,
        )
        # Compressed cluster descriptors: the sector count sits above the offset, split at this bit.
        self._compressed_shift = 62 - (cluster_bits - 8)
        self._decompress = _cluster_decompressor(self._cluster_size, compression_type)

    def units(self, start: int, end: int) -> Iterator[Segment]:
        return self._tables.units(start, end, self._cluster_runs)

    def _cluster_runs(self, span_start: int, l2_table: array.array[int], first: int, last: int) -> Iterator[Segment]:
        """Clusters `first` to `last` of one L2 table, as runs: zeros together, file-contiguous data together."""
        cluster_size = self._cluster_size
        index = first
        while index < last:
            entry = l2_table[index]
            virtual_offset = span_start + index * cluster_size
            if entry & COMPRESSED_FLAG:
                yield self._compressed_cluster(virtual_offset, entry)
                index += 1
                continue
            run_end = index + 1
            if self._reads_as_zeros(entry):
                # Entries without an offset, zero flag or not, COPIED or not, are skipped as one run; a zero-flag
                # entry that keeps its cluster (preallocated zeros) is looked at on its own and continues the run.
                ignored = self._zero_run_bits
                run_end = end_of_run(l2_table, run_end, last, ignored_bits=ignored)
                while run_end < last and self._reads_as_zeros(l2_table[run_end]):
                    run_end = end_of_run(l2_table, run_end + 1, last, ignored_bits=ignored)
                yield zero(virtual_offset, (run_end - index) * cluster_size)
            else:
                host_offset = self._data_cluster_offset(entry)
                # Entries holding just the next offset (and the COPIED flag) continue the run.
                run_end = end_of_contiguous_run(
                    l2_table, index, last, first_value=host_offset, step=cluster_size, ignored_bits=COPIED_FLAG
                )
                self._data_cluster_offset(host_offset + (run_end - index - 1) * cluster_size)
                yield stored(virtual_offset, (run_end - index) * cluster_size, host_offset)
            index = run_end

    def _reads_as_zeros(self, entry: int) -> bool:
        if entry & COMPRESSED_FLAG:
            return False
        if entry & ZERO_FLAG:
            if self._version < 3:
                raise BrokenImageError(
                    f"A qcow2 version 2 image holds a zero-cluster entry, which only version 3 has: {REUPLOAD_HINT}."
                )
            return True
        return not entry & OFFSET_MASK

    def _data_cluster_offset(self, entry: int) -> int:
        host_offset = entry & OFFSET_MASK
        file_size = self._metadata.file_size
        if host_offset & (self._cluster_size - 1) or host_offset >= file_size:
            raise BrokenImageError(
                f"A qcow2 data cluster points to offset {host_offset}, which is "
                f"{'not cluster-aligned' if host_offset < file_size else 'past the end of the file'}: {REUPLOAD_HINT}."
            )
        return host_offset

    def _compressed_cluster(self, virtual_offset: int, entry: int) -> Segment:
        file_size = self._metadata.file_size
        host_offset = entry & ((1 << self._compressed_shift) - 1)
        sectors = ((entry >> self._compressed_shift) & ((1 << (self._cluster_bits - 8)) - 1)) + 1
        if host_offset >= file_size:
            raise BrokenImageError(
                f"A compressed qcow2 cluster points to offset {host_offset}, past the end of the "
                f"{file_size}-byte file: {REUPLOAD_HINT}."
            )
        # The stored length is rounded up to sectors and may run past the end of the file: read what is there.
        stored_length = min(sectors * SECTOR - host_offset % SECTOR, file_size - host_offset)
        return compressed(virtual_offset, self._cluster_size, host_offset, stored_length, self._decompress)


def _backing_file_name(metadata: MetadataReader, offset: int, size: int) -> str:
    if 0 < size <= 1023 and offset + size <= metadata.file_size:
        return "'" + printable(metadata.read(offset, size, "backing file name")) + "'"
    return "(name unreadable)"


def _walk_extensions(metadata: MetadataReader, header_length: int, cluster_size: int) -> str | None:
    """The header extensions, bounded by the first cluster; returns the external data file name if one is named."""
    area_end = min(cluster_size, metadata.file_size, metadata.limits.max_header_bytes)
    if header_length >= area_end:
        return None
    area = metadata.read(0, area_end, "header extensions")
    position = header_length
    data_file_name: str | None = None
    while position + 8 <= area_end:
        extension_type, length = struct.unpack_from(">II", area, position)
        if extension_type == EXTENSION_END:
            return data_file_name
        position += 8
        if position + length > area_end:
            raise BrokenImageError(
                f"A qcow2 header extension (type {extension_type:#010x}, {length} bytes) runs past the header "
                f"cluster: {REUPLOAD_HINT}."
            )
        if extension_type == EXTENSION_DATA_FILE:
            data_file_name = printable(area[position : position + length])
        position += (length + 7) & ~7
    return data_file_name


def _require_table(metadata: MetadataReader, offset: int, length: int, cluster_size: int, what: str) -> None:
    if offset & (cluster_size - 1):
        raise BrokenImageError(f"The qcow2 {what} offset {offset} is not cluster-aligned: {REUPLOAD_HINT}.")
    metadata.require_inside(offset, length, what)


def _vet_l1_table(metadata: MetadataReader, l1_table: array.array[int], cluster_size: int) -> None:
    """Every L2 table aligned, inside the file, and used once: total L2 reads stay within the file size."""
    seen: set[int] = set()
    for entry in l1_table:
        l2_offset = entry & OFFSET_MASK
        if not l2_offset:
            continue
        if l2_offset & (cluster_size - 1) or l2_offset + cluster_size > metadata.file_size:
            raise BrokenImageError(
                f"The qcow2 L1 table points to an L2 table at offset {l2_offset}, "
                f"{'not cluster-aligned' if l2_offset & (cluster_size - 1) else 'outside the file'}: {REUPLOAD_HINT}."
            )
        if is_repeated(seen, l2_offset):
            raise BrokenImageError(f"Two qcow2 L1 entries share the L2 table at offset {l2_offset}: {REUPLOAD_HINT}.")


def _inflate_deflate(stored_bytes: bytes, cluster_size: int) -> bytes:
    # qemu writes raw deflate streams (no zlib header); the output is capped at one cluster.
    return zlib.decompressobj(-15).decompress(stored_bytes, cluster_size)


def _cluster_decompressor(cluster_size: int, compression_type: int) -> Decompressor:
    name, inflate = ("zstd", decompress_zstd) if compression_type == COMPRESSION_ZSTD else ("zlib", _inflate_deflate)

    def decompress(stored_bytes: bytes) -> bytes:
        try:
            inflated = inflate(stored_bytes, cluster_size)
        except (zlib.error, ZstdDecompressionError) as error:
            raise BrokenImageError(
                f"A {name}-compressed qcow2 cluster is corrupt ({error}): {REUPLOAD_HINT}."
            ) from error
        if len(inflated) < cluster_size:
            raise BrokenImageError(
                f"A {name}-compressed qcow2 cluster inflates to {len(inflated)} bytes instead of {cluster_size}: "
                f"{REUPLOAD_HINT}."
            )
        return inflated

    return decompress
