"""Crafted files the engine once read differently from qemu, or at a cost out of proportion to the file.

For each, the engine refuses with its own error and a reason, or reads exactly what `qemu-img convert -O raw`
reads; where qemu refuses a file as corrupt, the engine refuses it too (docs/engine.md names the exceptions).
"""

from __future__ import annotations

import struct
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import pytest
from backports import zstd as zstd_module
from diskport.engine import BLOCK_SIZE, InspectionLimits, LocalFileSource, RefusedImageError, open_disk
from diskport.engine.crc32c import crc32c
from diskport.errors import ims_error_of

from .crafting import (
    KIB,
    MIB,
    VIRTUAL_DISK_SIZE_LE,
    patch,
    sparse_vmdk,
    vhd_footer_offset,
    vhdx_metadata_item_offset,
)
from .images import ImageCase, requires_qemu_img
from .test_safety import assert_rejected, assert_unsupported, copy_of

pytestmark = [requires_qemu_img, pytest.mark.usefixtures("image_cases")]

QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi", "raw": "raw"}
OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00
REGION_TABLE_OFFSET = 192 * KIB
METADATA_REGION_LE = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
BAT_REGION_LE = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")


def qemu_reading(path: Path, image_format: str, work_dir: Path) -> bytes | None:
    """What `qemu-img convert -O raw` reads from the file, or None where qemu refuses it."""
    target = work_dir / f"{path.name}.qemu.raw"
    result = subprocess.run(
        ["qemu-img", "convert", "-f", QEMU_FORMATS[image_format], "-O", "raw", str(path), str(target)],
        capture_output=True,
    )
    return target.read_bytes() if result.returncode == 0 else None


def engine_reading(path: Path, limits: InspectionLimits | None = None) -> bytes:
    """The whole virtual disk as the engine's non-zero blocks give it, after the allocation map is read."""
    with LocalFileSource(path) as source, open_disk(source, limits=limits) as disk:
        disk.allocated_ranges()
        image = bytearray(disk.virtual_size)
        for block in disk.iter_blocks(0, -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE):
            start = block.index * BLOCK_SIZE
            image[start : start + BLOCK_SIZE] = block.data[: max(0, disk.virtual_size - start)]
        return bytes(image)


def u64be(data: bytes, offset: int) -> int:
    return int(struct.unpack_from(">Q", data, offset)[0])


def first_l2_table(data: bytes) -> int:
    return u64be(data, u64be(data, 40)) & OFFSET_MASK


def vhdx_region(data: bytes, region_le: bytes) -> tuple[int, int, int]:
    """(position of the entry in the file, region offset, region length)."""
    position = REGION_TABLE_OFFSET + data[REGION_TABLE_OFFSET : REGION_TABLE_OFFSET + 64 * KIB].index(region_le)
    offset, length = struct.unpack_from("<QI", data, position + 16)
    return position, offset, length


def fix_region_table_checksum(path: Path) -> None:
    table = bytearray(path.read_bytes()[REGION_TABLE_OFFSET : REGION_TABLE_OFFSET + 64 * KIB])
    table[4:8] = bytes(4)
    patch(path, REGION_TABLE_OFFSET + 4, struct.pack("<I", crc32c(bytes(table))))


# --- Class 1: a compressed unit named by two entries -----------------------------------------------------------


def test_two_qcow2_entries_naming_one_compressed_cluster_are_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a compressed qcow2 whose second L2 entry names the compressed cluster of the first
    image = copy_of(image_cases["qcow2-v3-zlib"], work_dir)
    data = image.read_bytes()
    l2_offset = first_l2_table(data)
    patch(image, l2_offset + 8, data[l2_offset : l2_offset + 8])
    # When its allocation map is read, then it is refused like a shared table: no writer shares a compressed unit,
    # and every entry naming the same small stream would make a small file cost the work of a huge disk
    assert_rejected(image, "compressed unit", "crafted")


def test_two_grain_table_entries_naming_one_compressed_grain_are_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a streamOptimized VMDK whose grain table repeats its first grain in the next entry
    image = copy_of(image_cases["vmdk-streamOptimized"], work_dir)
    data = image.read_bytes()
    (gd_sector,) = struct.unpack_from("<Q", data, 56)  # qemu-img writes the directory's offset in the header
    (table_sector,) = struct.unpack_from("<I", data, gd_sector * 512)
    table = table_sector * 512
    entries = struct.unpack_from("<16I", data, table)
    first_grain = next(entry for entry in entries if entry > 1)
    index = entries.index(first_grain)
    patch(image, table + 4 * (index + 1), struct.pack("<I", first_grain))
    # When it is read, then it is refused before any block is emitted
    assert_rejected(image, "compressed unit")


# --- Class 5: the metadata budget holds per pass -----------------------------------------------------------------


def test_an_image_within_the_metadata_budget_is_read_to_its_end(image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 with many L2 tables, a table cache of two, and the smallest budget its allocation map fits in
    case = image_cases["qcow2-v3-4k-clusters"]
    budget = 4 * KIB
    while True:
        limits = InspectionLimits(max_metadata_bytes=budget, table_cache_bytes=8 * KIB)
        try:
            with LocalFileSource(case.path) as source, open_disk(source, limits=limits) as disk:
                disk.allocated_ranges()
            break
        except RefusedImageError:
            budget += 4 * KIB
    # When the whole disk is mapped and then read (which reads every L2 table again)
    # Then no pass is refused for its metadata, and the disk reads as qemu reads it
    assert engine_reading(case.path, limits) == case.oracle.read_bytes()


# --- Class 8: stored data that runs past the end of the file, or over the format's own structures --------------------


def test_a_dynamic_vhd_block_running_past_the_end_of_the_file_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a dynamic VHD whose last 64 KiB of block data were cut away in front of its footer
    image = copy_of(image_cases["vhd-dynamic"], work_dir)
    data = image.read_bytes()
    footer = data[vhd_footer_offset(image) :]
    image.write_bytes(data[: -512 - 64 * KIB] + footer)
    # When it is read, then it is refused, as qemu refuses it
    assert qemu_reading(image, "vhd", work_dir) is None
    assert_rejected(image, "runs past the end")


def test_a_vhdx_block_over_its_metadata_region_is_refused(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a dynamic VHDX whose first BAT entry maps block 0 onto the metadata region
    image = copy_of(image_cases["vhdx-dynamic"], work_dir)
    data = image.read_bytes()
    _, metadata_offset, _ = vhdx_region(data, METADATA_REGION_LE)
    _, bat_offset, _ = vhdx_region(data, BAT_REGION_LE)
    patch(image, bat_offset, struct.pack("<Q", metadata_offset | 6))
    # When it is read, then it is refused, as qemu refuses it
    assert qemu_reading(image, "vhdx", work_dir) is None
    assert_rejected(image, "VHDX block 0", "overlaps")


def test_a_vhdx_region_listed_twice_is_refused(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a VHDX region table that lists the BAT region a second time, at another offset
    image = copy_of(image_cases["vhdx-dynamic"], work_dir)
    data = image.read_bytes()
    position, offset, _length = vhdx_region(data, BAT_REGION_LE)
    (count,) = struct.unpack_from("<I", data, REGION_TABLE_OFFSET + 8)
    duplicate = bytearray(data[position : position + 32])
    struct.pack_into("<Q", duplicate, 16, offset + MIB)
    patch(image, REGION_TABLE_OFFSET + 16 + 32 * count, bytes(duplicate))
    patch(image, REGION_TABLE_OFFSET + 8, struct.pack("<I", count + 1))
    fix_region_table_checksum(image)
    # When it is opened, then it is refused (which copy counts would be a guess), as qemu refuses it
    assert qemu_reading(image, "vhdx", work_dir) is None
    assert_rejected(image, "twice")


# --- Class 3: the table cache counts what a decoded table costs ------------------------------------------------------


def test_a_vmdk_with_one_entry_per_grain_table_is_read_in_the_table_cache_bound(work_dir: Path) -> None:
    # Given a 16 MiB sparse VMDK of 512-byte grains with one entry per grain table (32,768 tables; qemu reads it),
    # a few grains holding data, and a 1 MiB table cache
    grains = {0: b"first", 5_000: b"middle" * 80, 32_767: b"last"}
    image = sparse_vmdk(
        work_dir / "one-entry-tables.vmdk",
        capacity_sectors=32_768,
        grain_sectors=1,
        entries_per_grain_table=1,
        grains=grains,
    )
    limits = InspectionLimits(table_cache_bytes=MIB)
    # When its allocation map is read (every grain table), and then the whole disk
    tracemalloc.start()
    try:
        with LocalFileSource(image) as source, open_disk(source, limits=limits) as disk:
            disk.allocated_ranges()
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then the tables kept stay near the cache's size (each tiny table costs about 250 bytes kept: counted by its
    # entries alone, all 32,768 would stay, 8 MiB), and the disk reads as qemu reads it
    assert peak < 5 * MIB, peak
    assert engine_reading(image, limits) == qemu_reading(image, "vmdk", work_dir)


# --- Class 4: entries that mean zeros without being zero bytes ---------------------------------------------------


def test_qcow2_zero_flag_and_copied_only_entries_read_as_zeros(work_dir: Path) -> None:
    # Given a 64 MiB qcow2 (4 KiB clusters) with data at both ends, zero-flag entries written by qemu over the middle,
    # and COPIED-only entries crafted over part of them
    image = work_dir / "zero-flags.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", image, "64M"], check=True)
    for command in ("write -P 9 0 64k", "write -z 64k 60M", "write -P 8 63M 1M"):
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, image], check=True, capture_output=True)
    data = image.read_bytes()
    l2_offset = first_l2_table(data)
    patch(image, l2_offset + 8 * 100, struct.pack(">Q", 1 << 63) * 50)
    # When it is read, then it reads as qemu reads it
    assert engine_reading(image) == qemu_reading(image, "qcow2", work_dir)


def test_vdi_discarded_blocks_read_as_zeros(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a dynamic VDI whose free blocks are marked discarded (0xFFFFFFFE, what VirtualBox writes)
    image = copy_of(image_cases["vdi-dynamic"], work_dir)
    data = image.read_bytes()
    (block_map_offset,) = struct.unpack_from("<I", data, 340)
    (blocks,) = struct.unpack_from("<I", data, 384)
    block_map = list(struct.unpack_from(f"<{blocks}I", data, block_map_offset))
    discarded = [0xFFFF_FFFE if entry == 0xFFFF_FFFF else entry for entry in block_map]
    assert discarded != block_map
    patch(image, block_map_offset, struct.pack(f"<{blocks}I", *discarded))
    # When it is read, then it reads as qemu reads it
    assert engine_reading(image) == qemu_reading(image, "vdi", work_dir)


def test_vmdk_zeroed_grains_read_as_zeros(work_dir: Path) -> None:
    # Given a sparse VMDK with the zeroed-grain flag whose middle grains are zeroed (entry 1), written by qemu
    image = work_dir / "zeroed-grains.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", image, "64M"], check=True)
    for command in ("write -P 9 0 64k", "write -z 64k 60M", "write -P 8 63M 1M"):
        subprocess.run(["qemu-io", "-f", "vmdk", "-c", command, image], check=True, capture_output=True)
    # When it is read, then it reads as qemu reads it
    assert engine_reading(image) == qemu_reading(image, "vmdk", work_dir)


# --- Class 7: grains cut short -----------------------------------------------------------------------------------


def first_stream_grain(data: bytes) -> tuple[int, int]:
    """(file offset, payload size) of the first compressed grain of a streamOptimized VMDK qemu-img wrote."""
    (gd_sector,) = struct.unpack_from("<Q", data, 56)
    (table_sector,) = struct.unpack_from("<I", data, gd_sector * 512)
    entries = struct.unpack_from("<512I", data, table_sector * 512)
    grain = next(entry for entry in entries if entry > 1) * 512
    (payload_size,) = struct.unpack_from("<I", data, grain + 8)
    return grain, payload_size


@pytest.mark.parametrize("damage", ["stream cut short", "inflates to less than a grain"])
def test_a_stream_optimized_grain_that_does_not_inflate_to_a_whole_grain_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase], damage: str
) -> None:
    # Given a streamOptimized VMDK whose first grain's deflate stream is cut to half its length, or replaced by a
    # complete stream of 100 bytes
    image = copy_of(image_cases["vmdk-streamOptimized"], work_dir)
    grain, payload_size = first_stream_grain(image.read_bytes())
    if damage == "stream cut short":
        patch(image, grain + 8, struct.pack("<I", payload_size // 2))
    else:
        short = zlib.compress(b"x" * 100)
        patch(image, grain + 8, struct.pack("<I", len(short)) + short)
    # When it is read, then it is refused (qemu fails the read; padding it with zeros would import another disk)
    assert qemu_reading(image, "vmdk", work_dir) is None
    assert_rejected(image, "compressed VMDK grain")


# --- Class 6: files that can be read two ways are refused, naming both readings ------------------------------------


def vhd_checksum(structure: bytes, checksum_offset: int) -> bytes:
    without = structure[:checksum_offset] + bytes(4) + structure[checksum_offset + 4 :]
    return struct.pack(">I", ~sum(without) & 0xFFFF_FFFF)


def test_a_dynamic_vhd_whose_header_copy_disagrees_with_its_footer_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a dynamic VHD whose copy of the footer at offset 0 claims another size (with a valid checksum)
    image = copy_of(image_cases["vhd-dynamic"], work_dir)
    copy = bytearray(image.read_bytes()[:512])
    struct.pack_into(">Q", copy, 48, struct.unpack_from(">Q", copy, 48)[0] - MIB)
    copy[64:68] = vhd_checksum(bytes(copy), 64)
    patch(image, 0, bytes(copy))
    # When it is opened, then it is refused: qemu reads the copy, the specification the footer
    assert_rejected(image, "two ways", "offset 0", "footer")


def stream_optimized_with_footer(source: Path, target: Path) -> Path:
    """qemu-img's streamOptimized VMDK rewritten as VMware writes it: the header says "directory at the end" and a
    footer (marker, header, end-of-stream marker) ends the file."""
    data = bytearray(source.read_bytes())
    header = bytes(data[:512])
    while data.endswith(bytes(512)):  # qemu-img ends the stream with a zero end-of-stream marker
        del data[-512:]
    struct.pack_into("<Q", data, 56, 0xFFFF_FFFF_FFFF_FFFF)
    footer_marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    end_of_stream = bytes(512)
    target.write_bytes(bytes(data) + footer_marker + header + end_of_stream)
    return target


def test_a_stream_optimized_vmdk_with_its_footer_at_the_end_reads_as_qemu_reads_it(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a streamOptimized VMDK whose grain directory is named only by its footer
    image = stream_optimized_with_footer(image_cases["vmdk-streamOptimized"].path, work_dir / "footer.vmdk")
    # When it is read, then it reads as qemu reads it
    assert engine_reading(image) == qemu_reading(image, "vmdk", work_dir)


def test_an_odd_sized_stream_optimized_vmdk_is_refused_naming_both_footers(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given that VMDK with 100 bytes more, so its last 1536 bytes and qemu's footer (at the size rounded up to a
    # sector, less 1536) are different places
    image = stream_optimized_with_footer(image_cases["vmdk-streamOptimized"].path, work_dir / "odd.vmdk")
    image.write_bytes(image.read_bytes() + b"\0" * 100)
    # When it is opened, then it is refused, naming both offsets
    size = image.stat().st_size
    assert_rejected(image, "two ways", str(size - 1536), str(-(-size // 512) * 512 - 1536))


DESCRIPTOR = '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicSparse"\n'


@pytest.mark.parametrize(
    "descriptor",
    [
        DESCRIPTOR + '# parentFileNameHint="vmdk-parent.vmdk"\nRW 2048 SPARSE "child.vmdk"\n',
        DESCRIPTOR + 'RW 2048 SPARSE "child.vmdk"\nddb.comment = "see parentFileNameHint="vmdk-parent.vmdk""\n',
    ],
    ids=["in-a-comment", "inside-another-value"],
)
def test_a_parent_named_anywhere_qemu_looks_makes_the_vmdk_a_child(work_dir: Path, descriptor: str) -> None:
    # Given a sparse VMDK whose descriptor names a parent where qemu's plain text search finds it
    image = sparse_vmdk(
        work_dir / "child.vmdk",
        capacity_sectors=2048,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={0: b"data"},
        descriptor=descriptor,
    )
    # When it is opened, then it is refused as a child disk, naming the parent qemu would open
    assert qemu_reading(image, "vmdk", work_dir) is None
    error = assert_unsupported(image, "Differencing", "vmdk-parent.vmdk")
    assert ims_error_of(error).code == "IMG.0072"


def test_a_parent_cid_qemu_reads_first_makes_the_vmdk_a_child(work_dir: Path) -> None:
    # Given a descriptor whose first parentCID (in a comment) is not ffffffff, and whose line says ffffffff
    descriptor = DESCRIPTOR.replace("version=1\n", "version=1\n# parentCID=1234abcd\n") + 'RW 2048 SPARSE "c.vmdk"\n'
    image = sparse_vmdk(
        work_dir / "cid.vmdk",
        capacity_sectors=2048,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={0: b"data"},
        descriptor=descriptor,
    )
    # When it is opened, then it is refused as a child disk
    assert_unsupported(image, "Differencing")


def test_a_create_type_qemu_reads_differently_is_refused_naming_both(work_dir: Path) -> None:
    # Given a descriptor with a createType in a comment above its createType line
    descriptor = DESCRIPTOR.replace("version=1\n", 'version=1\n# createType="monolithicFlat"\n')
    image = sparse_vmdk(
        work_dir / "two-types.vmdk",
        capacity_sectors=2048,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={0: b"data"},
        descriptor=descriptor + 'RW 2048 SPARSE "two-types.vmdk"\n',
    )
    # When it is opened, then it is refused, naming both readings
    assert_rejected(image, "two ways", "monolithicSparse", "monolithicFlat")


def test_a_sparse_vmdk_of_capacity_0_with_an_embedded_descriptor_is_refused(work_dir: Path) -> None:
    # Given a sparse VMDK of capacity 0 whose embedded descriptor names a flat extent on the host, which qemu opens
    image = sparse_vmdk(
        work_dir / "capacity-0.vmdk",
        capacity_sectors=0,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={},
        descriptor='# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n',
    )
    # When it is opened, then it is refused, naming both readings, and nothing else is opened
    assert_rejected(image, "capacity of 0", "two ways")


def test_text_qemu_probes_as_a_vmdk_descriptor_is_not_imported_as_raw(work_dir: Path) -> None:
    # Given text without the "# Disk DescriptorFile" line that qemu still opens as a VMDK descriptor
    text = work_dir / "probed.img"
    text.write_bytes(b'# any comment\n   \nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n')
    # When it is opened, then it is a descriptor, refused for naming a file outside the upload
    assert_rejected(text, "/etc/passwd")


def test_a_bochs_image_is_unsupported_not_raw(work_dir: Path) -> None:
    # Given a Bochs growing image header (which qemu opens as bochs)
    header = bytearray(512)
    header[0:23] = b"Bochs Virtual HD Image\0"
    header[32:40] = b"Redolog\0"
    header[48:56] = b"Growing\0"
    struct.pack_into("<I", header, 64, 0x0002_0000)
    image = work_dir / "disk.bochs"
    image.write_bytes(bytes(header) + bytes(MIB))
    # When it is opened, then it is refused as unsupported, with how to convert it
    assert_unsupported(image, "Bochs", "qemu-img convert")


def test_a_fixed_vhd_of_0_bytes_is_refused(work_dir: Path) -> None:
    # Given a fixed VHD of 0 bytes, which qemu refuses
    image = work_dir / "zero.vhd"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed", image, "0"], check=True)
    assert qemu_reading(image, "vhd", work_dir) is None
    # When it is opened, then it is refused
    assert_rejected(image, "0 bytes")


# --- Class 8: sizes that are not a whole number of sectors ---------------------------------------------------------


def with_odd_size(image: Path, image_format: str, size: int) -> Path:
    """The image with its header's virtual size set to `size` (checksums fixed where the format has them)."""
    if image_format == "qcow2":
        patch(image, 24, struct.pack(">Q", size))
    elif image_format == "vdi":
        patch(image, 368, struct.pack("<Q", size))
    elif image_format == "vhdx":
        patch(image, vhdx_metadata_item_offset(image, VIRTUAL_DISK_SIZE_LE), struct.pack("<Q", size))
    return image


@pytest.mark.parametrize("case_name", ["qcow2-v3", "vdi-dynamic", "vhdx-dynamic"])
def test_a_size_that_is_not_whole_sectors_is_read_as_qemu_rounds_it(
    work_dir: Path, image_cases: dict[str, ImageCase], case_name: str
) -> None:
    # Given an image whose virtual size is 100 bytes short of a whole number of sectors
    case = image_cases[case_name]
    image = copy_of(case, work_dir)
    with_odd_size(image, case.format, 8 * MIB - 100)
    # When it is read, then its size and bytes are qemu's: qcow2 and VHDX round down, VDI up
    expected = qemu_reading(image, case.format, work_dir)
    assert expected is not None
    with LocalFileSource(image) as source, open_disk(source) as disk:
        assert disk.virtual_size == len(expected)
    assert engine_reading(image) == expected


def test_a_raw_file_that_is_not_whole_sectors_is_refused_rather_than_rounded(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a raw disk cut 100 bytes short of a whole number of sectors (qemu would pad its last sector with zeros)
    image = copy_of(image_cases["raw"], work_dir)
    image.write_bytes(image.read_bytes()[: 8 * MIB - 100])
    # When it is opened, then it is refused: a disk is whole sectors, so such a file is most likely not a disk
    assert_unsupported(image, "not a whole number of 512-byte sectors")


# --- Class 8: qcow2 header fields qemu refuses ------------------------------------------------------------------


def test_a_qcow2_refcount_table_of_0_clusters_is_refused(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 whose header gives a refcount table of 0 clusters
    image = patch(copy_of(image_cases["qcow2-v3"], work_dir), 56, struct.pack(">I", 0))
    # When it is opened, then it is refused, as qemu refuses it
    assert qemu_reading(image, "qcow2", work_dir) is None
    assert_rejected(image, "refcount table of 0 clusters")


def test_a_qcow2_snapshot_count_beyond_the_file_is_refused(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 claiming 60,000 snapshots in a table starting at its last cluster, far too many for the file
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    last_cluster = (image.stat().st_size - 1) // 65_536 * 65_536
    patch(image, 60, struct.pack(">IQ", 60_000, last_cluster))
    # When it is opened, then it is refused: the table cannot hold them (qemu 7.2 reads the entries past the end of
    # the file as zeros; docs/engine.md keeps the refusal as the documented reading)
    assert_rejected(image, "snapshot table", "outside")


# --- Class 8: zstd clusters of the frame shapes qemu reads ---------------------------------------------------------


def test_zstd_clusters_of_a_skippable_frame_and_a_frame_or_of_two_frames_read_as_qemu_reads_them(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a zstd qcow2 whose first compressed cluster is rewritten as a skippable frame then a frame, and whose
    # second as two frames, each stored anew at the end of the file and named by its L2 entry
    image = copy_of(image_cases["qcow2-v3-zstd"], work_dir)
    data = image.read_bytes()
    cluster_bits = struct.unpack_from(">I", data, 20)[0]
    shift = 62 - (cluster_bits - 8)
    l2_offset = first_l2_table(data)
    compressed_entries = [
        number for number in range(1 << (cluster_bits - 3)) if u64be(data, l2_offset + 8 * number) & (1 << 62)
    ][:2]
    appended = bytearray()
    end = -(-len(data) // 512) * 512
    for number, shape in zip(compressed_entries, ("skippable then frame", "two frames"), strict=True):
        entry = u64be(data, l2_offset + 8 * number)
        host_offset = entry & ((1 << shift) - 1)
        room = (((entry >> shift) & ((1 << (cluster_bits - 8)) - 1)) + 1) * 512 - (host_offset & 511)
        cluster = zstd_module.ZstdDecompressor().decompress(data[host_offset : host_offset + room])
        if shape == "skippable then frame":
            frames = b"\x50\x2a\x4d\x18" + struct.pack("<I", 4) + b"skip" + zstd_module.compress(cluster)
        else:
            half = len(cluster) // 2
            frames = zstd_module.compress(cluster[:half]) + zstd_module.compress(cluster[half:])
        sectors = -(-len(frames) // 512)
        new_offset = end + len(appended)
        appended += frames.ljust(sectors * 512, b"\0")
        new_entry = (1 << 62) | (sectors - 1) << shift | new_offset
        patch(image, l2_offset + 8 * number, struct.pack(">Q", new_entry))
    with image.open("r+b") as file:
        file.truncate(end)
        file.seek(end)
        file.write(bytes(appended))
    # When it is read, then it reads as qemu reads it
    assert engine_reading(image) == qemu_reading(image, "qcow2", work_dir)


def test_one_entry_grain_tables_are_charged_as_whole_tables_to_the_metadata_budget(work_dir: Path) -> None:
    # Given the same kind of VMDK (32,768 one-entry grain tables) and a metadata budget of 16 MiB
    image = sparse_vmdk(
        work_dir / "one-entry-tables.vmdk",
        capacity_sectors=32_768,
        grain_sectors=1,
        entries_per_grain_table=1,
        grains={0: b"first"},
    )
    limits = InspectionLimits(max_metadata_bytes=16 * MIB)
    # When its allocation map is read, then it is refused for its metadata: each table costs a read and a decode
    # whatever its size, so each is charged as a table of 512 entries (2 KiB, 64 MiB in all), and the time a pass
    # takes stays bounded by the budget
    with (
        LocalFileSource(image) as source,
        open_disk(source, limits=limits) as disk,
        pytest.raises(RefusedImageError, match="metadata"),
    ):
        disk.allocated_ranges()


def test_a_vhdx_metadata_item_listed_twice_is_refused(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a VHDX metadata table whose last entry repeats the virtual disk size item, pointing at other bytes
    image = copy_of(image_cases["vhdx-dynamic"], work_dir)
    data = image.read_bytes()
    _, metadata_offset, _ = vhdx_region(data, METADATA_REGION_LE)
    (count,) = struct.unpack_from("<H", data, metadata_offset + 10)
    entries = [data[metadata_offset + 32 + 32 * n : metadata_offset + 64 + 32 * n] for n in range(count)]
    size_entry = bytearray(next(entry for entry in entries if entry[:16] == VIRTUAL_DISK_SIZE_LE))
    struct.pack_into("<I", size_entry, 16, struct.unpack_from("<I", size_entry, 16)[0] + 8)
    patch(image, metadata_offset + 32 + 32 * count, bytes(size_entry))
    patch(image, metadata_offset + 10, struct.pack("<H", count + 1))
    # When it is opened, then it is refused (which one counts would be a guess), as qemu refuses it
    assert qemu_reading(image, "vhdx", work_dir) is None
    assert_rejected(image, "twice")


def test_vmdk_grain_tables_of_more_than_512_entries_are_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a sparse VMDK whose header gives 65,536 entries per grain table
    image = patch(copy_of(image_cases["vmdk-monolithicSparse"], work_dir), 44, struct.pack("<I", 65_536))
    # When it is opened, then it is refused, as qemu refuses it
    assert qemu_reading(image, "vmdk", work_dir) is None
    assert_rejected(image, "65536 entries per grain table")


def test_a_small_vdi_whose_blocks_all_map_one_stored_block_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a 14 MiB static VDI claiming 128 MiB, every block mapped to its first stored block
    image = copy_of(image_cases["vdi-static"], work_dir)
    (block_map_offset, data_offset) = struct.unpack_from("<II", image.read_bytes(), 340)
    assert data_offset - block_map_offset >= 128 * 4
    patch(image, 368, struct.pack("<QIII", 128 * MIB, MIB, 0, 128))
    patch(image, block_map_offset, struct.pack("<I", 0) * 128)
    # When its allocation map is read, then it is refused: the tables map far more stored data than the file holds
    # (one block of slack, where 256 MiB of slack let it through)
    assert_rejected(image, "more stored data")


def test_vhdx_blocks_in_every_state_that_reads_as_zeros_read_as_zeros(work_dir: Path) -> None:
    # Given a dynamic VHDX of 1 MiB blocks (4096 to a sector bitmap chunk, of which this disk spans two) with data in
    # a few blocks, whose absent blocks are marked undefined, zero, unmapped and (draft) unmapped in turn
    image = work_dir / "states.vhdx"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M,subformat=dynamic", image, "6G"], check=True
    )
    for command in ("write -P 7 0 1M", "write -P 8 4095M 2M", "write -P 9 6143M 1M"):
        subprocess.run(["qemu-io", "-f", "vhdx", "-c", command, image], check=True, capture_output=True)
    data = image.read_bytes()
    _, bat_offset, bat_length = vhdx_region(data, BAT_REGION_LE)
    entries = list(struct.unpack_from(f"<{bat_length // 8}Q", data, bat_offset))
    states = iter([1, 2, 3, 5, 0, 0, 0] * len(entries))
    marked = [next(states) if entry == 0 else entry for entry in entries]
    patch(image, bat_offset, struct.pack(f"<{len(marked)}Q", *marked))
    # When it is read, then exactly the blocks with data come out, as qemu reads them
    oracle = work_dir / "states.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", image, oracle], check=True)
    with LocalFileSource(image) as source, open_disk(source) as disk:
        blocks = {block.index: block.data for block in disk.iter_blocks(0, disk.virtual_size)}
    assert sorted(blocks) == [0, 1, 8190, 8191, 8192, 8193, 12286, 12287]
    with oracle.open("rb") as expected:
        for index, block in blocks.items():
            expected.seek(index * BLOCK_SIZE)
            assert expected.read(BLOCK_SIZE) == block
