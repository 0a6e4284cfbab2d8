"""Hostile, broken and unsupported images are refused before any of their data is decoded.

Each refusal is the engine's own error: BrokenImageError (a job fails with IMG.0057) for a broken or unsafe file,
UnsupportedImageError (IMG.0072) for a format or sub-format the engine does not read, with a reason that names the
problem and says what to do.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from diskport.engine import (
    BrokenImageError,
    InspectionLimits,
    LocalFileSource,
    RefusedImageError,
    UnsupportedImageError,
    open_disk,
)
from diskport.errors import ims_error_of

from .crafting import (
    FILE_PARAMETERS_LE,
    KIB,
    MIB,
    fix_vhd_checksum,
    open_path,
    patch,
    qemu_img_create,
    vhd_footer_offset,
    vhdx_metadata_item_offset,
)
from .images import ImageCase, run

pytestmark = pytest.mark.usefixtures("image_cases")


def refusal(path: Path) -> RefusedImageError:
    with pytest.raises(RefusedImageError) as caught:
        open_path(path)
    return caught.value


def assert_rejected(path: Path, *words: str) -> BrokenImageError:
    error = refusal(path)
    assert type(error) is BrokenImageError, error.reason
    assert ims_error_of(error).code == "IMG.0057"
    for word in words:
        assert word in error.reason, error.reason
    return error


def assert_unsupported(path: Path, *words: str) -> UnsupportedImageError:
    error = refusal(path)
    assert isinstance(error, UnsupportedImageError), error.reason
    assert ims_error_of(error).code == "IMG.0072"
    for word in words:
        assert word in error.reason, error.reason
    return error


def copy_of(case: ImageCase, directory: Path) -> Path:
    target = directory / f"copy-of-{case.name}"
    target.write_bytes(case.path.read_bytes())
    return target


# --- Files that are not images at all -------------------------------------------------------------------------


def test_an_empty_file_is_rejected(work_dir: Path) -> None:
    # Given a file of zero bytes
    empty = work_dir / "empty.img"
    empty.touch()
    # When it is opened, then it is refused as an empty image file
    assert_rejected(empty, "empty")


def test_a_file_that_matches_no_format_is_raw(work_dir: Path) -> None:
    # Given a file of whole sectors whose bytes match no image format (nor an archive, nor text)
    plain = work_dir / "disk.qcow2"
    plain.write_bytes(bytes(range(256)) * 48)
    # When it is opened, whatever its name claims, then it is a raw disk of the file's size
    with LocalFileSource(plain) as source, open_disk(source) as disk:
        assert (disk.format, disk.virtual_size) == ("raw", 12_288)


# --- qcow2 ------------------------------------------------------------------------------------------------------


def test_a_qcow2_with_a_backing_file_is_rejected_and_names_it(work_dir: Path) -> None:
    # Given a qcow2 image that depends on another file
    qemu_img_create(work_dir / "base.raw", "raw", "1M")
    child = qemu_img_create(work_dir / "child.qcow2", "qcow2", None, "-b", str(work_dir / "base.raw"), "-F", "raw")
    # When it is opened, then it is refused with the backing file's name and how to flatten it
    assert_rejected(child, "backing file", "base.raw", "qemu-img convert")


def test_a_qcow2_with_an_external_data_file_is_rejected(work_dir: Path) -> None:
    # Given a qcow2 image whose data lives in another file
    image = qemu_img_create(work_dir / "meta.qcow2", "qcow2", "1M", "-o", f"data_file={work_dir / 'data.raw'}")
    # When it is opened, then it is refused and the data file is named
    assert_rejected(image, "external data file", "data.raw")


def test_a_qcow2_header_hidden_inside_a_raw_file_is_detected_and_refused(work_dir: Path) -> None:
    # Given a file meant to pass as raw, starting with the header of a qcow2 that points at /etc/passwd
    base = qemu_img_create(work_dir / "base.raw", "raw", "1M")
    child = qemu_img_create(work_dir / "child.qcow2", "qcow2", "1M", "-b", "/etc/passwd", "-F", "raw", "-u")
    disguised = work_dir / "disk.raw"
    disguised.write_bytes(child.read_bytes()[:4096] + base.read_bytes())
    # When it is opened, then the content decides: it is a qcow2 with a backing file, and it is refused
    assert_rejected(disguised, "/etc/passwd")


def test_a_qcow2_header_hidden_in_the_data_of_a_fixed_vhd_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a fixed VHD (raw data plus a footer) whose data starts with a qcow2 header
    image = copy_of(image_cases["vhd-fixed"], work_dir)
    patch(image, 0, image_cases["qcow2-v3"].path.read_bytes()[:512])
    # When it is opened, then both signatures are seen and the file is refused
    assert_rejected(image, "more than one format", "qcow2", "vhd")


def test_an_image_whose_virtual_disk_is_itself_an_image_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a qcow2 whose virtual disk starts with a VMDK header
    inner = image_cases["vmdk-monolithicSparse"].path
    outer = work_dir / "outer.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", inner, outer)
    # When it is opened, then it is refused as an image inside an image
    assert_rejected(outer, "image inside an image", "vmdk")


def test_an_image_whose_virtual_disk_ends_with_a_vhd_footer_is_refused(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a qcow2 whose virtual disk is a whole fixed VHD, footer last
    outer = work_dir / "outer.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", image_cases["vhd-fixed"].path, outer)
    # When it is opened, then it is refused as an image inside an image
    assert_rejected(outer, "image inside an image", "vhd")


def test_an_l1_table_past_the_end_of_the_file_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 whose L1 table offset points beyond the end of the file
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 40, struct.pack(">Q", 1 << 40))
    # When it is opened, then it is refused because the table lies outside the file
    assert_rejected(image, "L1 table", "outside")


def test_an_l1_entry_pointing_past_the_end_of_the_file_is_rejected(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a qcow2 whose first L1 entry points at an L2 table beyond the end of the file
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    (l1_offset,) = struct.unpack_from(">Q", image.read_bytes(), 40)
    patch(image, l1_offset, struct.pack(">Q", (1 << 63) | (64 << 30)))
    # When it is opened, then it is refused
    assert_rejected(image, "L2 table", "outside the file")


def test_an_l2_entry_pointing_past_the_end_of_the_file_is_rejected_before_data_is_read(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a qcow2 whose data cluster at 10 MiB points beyond the end of the file
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    data = image.read_bytes()
    (l1_offset,) = struct.unpack_from(">Q", data, 40)
    (l1_entry,) = struct.unpack_from(">Q", data, l1_offset)
    l2_index = 10 * MIB // (64 * KIB)
    patch(image, (l1_entry & 0x00FF_FFFF_FFFF_FE00) + 8 * l2_index, struct.pack(">Q", (1 << 63) | (1 << 40)))
    with (
        LocalFileSource(image) as source,
        open_disk(source) as disk,
        # When its allocation map is read, then it is refused
        pytest.raises(RefusedImageError, match="past the end of the file"),
    ):
        disk.allocated_ranges()


def test_tables_mapping_one_cluster_many_times_are_rejected_before_data_is_read(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a 5 MiB qcow2 claiming 512 MiB, every cluster of which maps the same stored cluster
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    data = image.read_bytes()
    (l1_offset,) = struct.unpack_from(">Q", data, 40)
    (l1_entry,) = struct.unpack_from(">Q", data, l1_offset)
    l2_offset = l1_entry & 0x00FF_FFFF_FFFF_FE00
    (first_data_entry,) = struct.unpack_from(">Q", data, l2_offset)
    patch(image, 24, struct.pack(">Q", 512 * MIB))
    patch(image, l2_offset, struct.pack(">Q", first_data_entry) * 8192)
    with (
        LocalFileSource(image) as source,
        open_disk(source) as disk,
        # When its allocation map is read, then it is refused: the work would not be proportional to the file
        pytest.raises(RefusedImageError, match="more stored data than"),
    ):
        disk.allocated_ranges()


def test_two_l1_entries_sharing_an_l2_table_are_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 (4 KiB clusters, so several L1 entries) whose second L1 entry repeats the first
    image = copy_of(image_cases["qcow2-v3-4k-clusters"], work_dir)
    data = image.read_bytes()
    (l1_offset,) = struct.unpack_from(">Q", data, 40)
    patch(image, l1_offset + 8, data[l1_offset : l1_offset + 8])
    # When it is opened, then it is refused: reading the same table twice could amplify reads without bound
    assert_rejected(image, "share the L2 table")


def test_a_virtual_size_of_2_to_the_63_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 whose header claims a virtual size of 2^63 bytes
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 24, struct.pack(">Q", 1 << 63))
    # When it is opened, then it is refused, naming the size and the EBS limit
    assert_rejected(image, "2^63", "64 TiB")


def test_a_virtual_size_beyond_64_tib_is_rejected(work_dir: Path) -> None:
    # Given a real qcow2 of 65 TiB
    image = qemu_img_create(work_dir / "huge.qcow2", "qcow2", "65T")
    # When it is opened, then it is refused: no EBS volume can hold it
    assert_rejected(image, "65 TiB", "64 TiB")


def test_a_huge_l1_size_is_refused_without_allocating_it(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 that claims a 64 TiB disk and an L1 table of 2^31 entries (16 GiB)
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 24, struct.pack(">Q", 64 << 40))
    patch(image, 36, struct.pack(">I", 1 << 31))
    # When it is opened
    tracemalloc.start()
    try:
        error = refusal(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is refused while memory stays small
    assert "L1 table" in error.reason
    assert peak < 16 * MIB


@pytest.mark.parametrize("bit", [5, 10, 63])
def test_unknown_qcow2_incompatible_features_are_unsupported(
    bit: int, work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a qcow2 version 3 that sets an incompatible feature bit this service does not know
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    (features,) = struct.unpack_from(">Q", image.read_bytes(), 72)
    patch(image, 72, struct.pack(">Q", features | 1 << bit))
    # When it is opened, then it is refused as unsupported, naming the bit
    assert_unsupported(image, "incompatible feature", str(bit))


def test_a_dirty_qcow2_with_lazy_refcounts_is_still_read(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a qcow2 whose dirty bit is set (refcounts not yet rebuilt; the data and its tables are sound)
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 72 + 7, bytes([1]))
    # When it is opened, then it is accepted: the engine never reads refcounts
    with LocalFileSource(image) as source, open_disk(source) as disk:
        assert disk.read(0x1234, 16) == image_cases["qcow2-v3"].oracle.read_bytes()[0x1234 : 0x1234 + 16]


def test_a_qcow2_marked_corrupt_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 72 + 7, bytes([2]))
    assert_rejected(image, "marked corrupt", "qemu-img check")


def test_a_qcow2_with_extended_l2_entries_is_unsupported(work_dir: Path) -> None:
    image = qemu_img_create(work_dir / "subclusters.qcow2", "qcow2", "1M", "-o", "extended_l2=on")
    assert_unsupported(image, "extended L2")


def test_an_encrypted_qcow2_is_unsupported(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 32, struct.pack(">I", 2))
    assert_unsupported(image, "Encrypted")


@pytest.mark.parametrize("version", [0, 4, 0xFFFF])
def test_qcow2_versions_other_than_2_and_3_are_unsupported(
    version: int, work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    image = copy_of(image_cases["qcow2-v3"], work_dir)
    patch(image, 4, struct.pack(">I", version))
    assert_unsupported(image, f"version {version}")


def test_qcow_version_1_is_unsupported(work_dir: Path) -> None:
    image = qemu_img_create(work_dir / "old.qcow", "qcow", "1M")
    assert_unsupported(image, "qcow (version 1)")


def test_a_zero_cluster_in_a_version_2_qcow2_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a version 2 qcow2 with a zero flag, which only version 3 defines
    image = copy_of(image_cases["qcow2-v2"], work_dir)
    data = image.read_bytes()
    (l1_offset,) = struct.unpack_from(">Q", data, 40)
    (l1_entry,) = struct.unpack_from(">Q", data, l1_offset)
    patch(image, l1_entry & 0x00FF_FFFF_FFFF_FE00, struct.pack(">Q", 1))
    assert_rejected(image, "zero-cluster")


def test_a_corrupt_compressed_cluster_is_rejected_when_read(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a zlib-compressed qcow2 whose compressed clusters are overwritten with garbage
    image = copy_of(image_cases["qcow2-v3-zlib"], work_dir)
    with LocalFileSource(image) as source, open_disk(source) as disk:
        compressed = [segment for segment in disk.segments(0, disk.virtual_size) if segment.kind.value == "compressed"]
    for segment in compressed:
        patch(image, segment.file_offset, b"\xff" * min(segment.stored_length, 64))
    # When its blocks are read, then it is refused as corrupt
    assert_rejected(image, "compressed qcow2 cluster")


# --- QED and other formats refused by name ------------------------------------------------------------------------


def test_qed_is_unsupported(work_dir: Path) -> None:
    assert_unsupported(qemu_img_create(work_dir / "disk.qed", "qed", "1M"), "QED")


def test_parallels_is_unsupported(work_dir: Path) -> None:
    assert_unsupported(qemu_img_create(work_dir / "disk.hdd", "parallels", "1M"), "Parallels")


def test_luks_is_unsupported(work_dir: Path) -> None:
    image = work_dir / "disk.luks"
    image.write_bytes(b"LUKS\xba\xbe\x00\x02" + bytes(8192))
    assert_unsupported(image, "LUKS")


# --- VMDK -------------------------------------------------------------------------------------------------------


def test_a_vmdk_descriptor_naming_etc_passwd_is_rejected(work_dir: Path) -> None:
    # Given a text descriptor whose flat extent is /etc/passwd
    descriptor = work_dir / "disk.vmdk"
    descriptor.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 2048 FLAT "/etc/passwd" 0\n'
    )
    # When it is opened, then it is refused, naming the file, and nothing outside the upload is read
    assert_rejected(descriptor, "/etc/passwd")


def test_a_sparse_vmdk_whose_embedded_descriptor_names_etc_passwd_is_rejected(
    work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    # Given a monolithicSparse VMDK whose embedded descriptor names /etc/passwd as its extent
    image = copy_of(image_cases["vmdk-monolithicSparse"], work_dir)
    data = image.read_bytes()
    name = b'SPARSE "vmdk-monolithicSparse.img"'
    assert name in data
    patch(image, data.index(name), b'SPARSE "/etc/passwd"'.ljust(len(name), b" "))
    # When it is opened, then it is refused
    assert_rejected(image, "/etc/passwd")


def test_a_descriptor_padded_to_defeat_regular_expressions_is_refused_quickly(work_dir: Path) -> None:
    # Given a descriptor of 64 KiB of whitespace and half-finished extent lines
    descriptor = work_dir / "padded.vmdk"
    descriptor.write_text("# Disk DescriptorFile\n" + "\n \t" * 10_000 + 'RW 1 SPARSE "' + " " * 30_000 + "x")
    # When it is opened, then it is refused in well under a second
    started = time.perf_counter()
    assert_unsupported(descriptor, "VMDK")
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("subformat", ["twoGbMaxExtentSparse", "monolithicFlat", "twoGbMaxExtentFlat"])
def test_multi_file_vmdk_descriptors_are_unsupported_and_name_the_subformat(subformat: str, work_dir: Path) -> None:
    # Given the descriptor of a VMDK that keeps its data in other files
    descriptor = qemu_img_create(work_dir / f"{subformat}.vmdk", "vmdk", "3M", "-o", f"subformat={subformat}")
    # When it is opened, then it is unsupported, naming the sub-format
    assert_unsupported(descriptor, subformat)


def test_one_extent_of_a_split_vmdk_is_unsupported(work_dir: Path) -> None:
    # Given the first extent file of a twoGbMaxExtentSparse VMDK, uploaded on its own
    qemu_img_create(work_dir / "split.vmdk", "vmdk", "3M", "-o", "subformat=twoGbMaxExtentSparse")
    # When it is opened, then it is unsupported: it is not a whole disk
    assert_unsupported(work_dir / "split-s001.vmdk", "multi-file VMDK")


def test_a_child_vmdk_is_unsupported_and_names_its_parent(work_dir: Path) -> None:
    qemu_img_create(work_dir / "parent.vmdk", "vmdk", "1M")
    child = qemu_img_create(work_dir / "child.vmdk", "vmdk", None, "-b", str(work_dir / "parent.vmdk"), "-F", "vmdk")
    assert_unsupported(child, "Differencing", "parent.vmdk")


def test_a_vmdk_grain_directory_outside_the_file_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vmdk-monolithicSparse"], work_dir)
    patch(image, 56, struct.pack("<Q", 1 << 30))
    assert_rejected(image, "grain directory", "outside")


def test_a_truncated_stream_optimized_vmdk_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vmdk-streamOptimized"], work_dir)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    error = refusal(image)
    assert ims_error_of(error).code == "IMG.0057"


# --- VHD, VHDX, VDI ---------------------------------------------------------------------------------------------


def test_a_differencing_vhd_is_unsupported(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a dynamic VHD turned into a differencing one (disk type 4, checksum fixed)
    image = copy_of(image_cases["vhd-dynamic"], work_dir)
    footer = vhd_footer_offset(image)
    patch(image, footer + 60, struct.pack(">I", 4))
    fix_vhd_checksum(image, footer, 64, 512)
    patch(image, 0, image.read_bytes()[footer : footer + 512])
    assert_unsupported(image, "Differencing", "VHD")


def test_a_vhd_footer_with_a_wrong_checksum_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vhd-fixed"], work_dir)
    patch(image, vhd_footer_offset(image) + 64, b"\0\0\0\1")
    assert_rejected(image, "checksum")


def test_a_vhd_whose_footer_was_cut_off_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vhd-dynamic"], work_dir)
    data = image.read_bytes()
    image.write_bytes(data[:-4096])
    assert_rejected(image, "truncated")


def test_a_vhd_block_table_outside_the_file_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vhd-dynamic"], work_dir)
    (header_offset,) = struct.unpack_from(">Q", image.read_bytes(), vhd_footer_offset(image) + 16)
    patch(image, header_offset + 16, struct.pack(">Q", 1 << 40))
    fix_vhd_checksum(image, header_offset, 36, 1024)
    assert_rejected(image, "block allocation table", "outside")


def test_a_differencing_vhdx_is_unsupported(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    # Given a dynamic VHDX whose file parameters say it has a parent
    image = copy_of(image_cases["vhdx-dynamic"], work_dir)
    parameters = vhdx_metadata_item_offset(image, FILE_PARAMETERS_LE)
    (flags,) = struct.unpack_from("<I", image.read_bytes(), parameters + 4)
    patch(image, parameters + 4, struct.pack("<I", flags | 2))
    assert_unsupported(image, "Differencing", "VHDX")


def test_a_vhdx_bat_entry_pointing_past_the_end_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vhdx-dynamic"], work_dir)
    data = image.read_bytes()
    region_table = data[192 * KIB : 256 * KIB]
    bat_region_le = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
    position = region_table.index(bat_region_le)
    (bat_offset,) = struct.unpack_from("<Q", region_table, position + 16)
    patch(image, bat_offset, struct.pack("<Q", (1 << 40) | 6))
    assert_rejected(image, "VHDX block 0")


def test_a_vhdx_with_both_headers_damaged_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vhdx-fixed"], work_dir)
    patch(image, 64 * KIB + 8, b"\xff" * 8)
    patch(image, 128 * KIB + 8, b"\xff" * 8)
    assert_rejected(image, "header")


@pytest.mark.parametrize("image_type", [3, 4])
def test_differencing_and_undo_vdi_are_unsupported(
    image_type: int, work_dir: Path, image_cases: dict[str, ImageCase]
) -> None:
    image = copy_of(image_cases["vdi-dynamic"], work_dir)
    patch(image, 76, struct.pack("<I", image_type))
    assert_unsupported(image, "Differencing", "VDI")


def test_a_vdi_with_a_parent_uuid_is_unsupported(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vdi-dynamic"], work_dir)
    patch(image, 440, b"\x11" * 16)
    assert_unsupported(image, "Differencing")


def test_a_vdi_block_map_outside_the_file_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vdi-dynamic"], work_dir)
    patch(image, 340, struct.pack("<I", 0xFFFF_FE00))
    assert_rejected(image, "block map", "outside")


def test_a_vdi_block_pointing_past_the_end_is_rejected(work_dir: Path, image_cases: dict[str, ImageCase]) -> None:
    image = copy_of(image_cases["vdi-static"], work_dir)
    (block_map_offset,) = struct.unpack_from("<I", image.read_bytes(), 340)
    patch(image, block_map_offset, struct.pack("<I", 100_000))
    assert_rejected(image, "VDI block 0", "past the end")


# --- Limits -----------------------------------------------------------------------------------------------------


def test_a_metadata_budget_stops_reading_tables(image_cases: dict[str, ImageCase]) -> None:
    # Given limits that allow 16 KiB of metadata reads: the header and L1 table, not every L2 table
    limits = InspectionLimits(max_metadata_bytes=16 * KIB)
    with LocalFileSource(image_cases["qcow2-v3-4k-clusters"].path) as source:
        disk = open_disk(source, limits=limits)
        # When the allocation map needs more, then it is refused instead of reading on
        with pytest.raises(RefusedImageError, match="metadata"):
            disk.allocated_ranges()
        disk.close()


def test_allocated_ranges_stay_bounded_by_merging_neighbours(image_cases: dict[str, ImageCase]) -> None:
    # Given limits that allow only 4 ranges
    limits = InspectionLimits(max_allocation_ranges=4)
    with LocalFileSource(image_cases["qcow2-v3-4k-clusters"].path) as source, open_disk(source, limits=limits) as disk:
        exact = open_disk(source).allocated_ranges()
        # When the allocation map is read
        coarse = disk.allocated_ranges()
    # Then it has at most 4 ranges, which still cover every exact range
    assert len(exact) > 4 >= len(coarse)
    assert all(any(start <= s and e <= end for start, end in coarse) for s, e in exact)
