"""A corpus of crafted image files: every refusal of design.md's "Hostile images", plus truncations, bit flips
and size lies. Each file comes with the IMS code its import must fail with and words its reason must hold.

Files are built from small qemu-img images and patched at known offsets (the formats' specifications give
them); names that a file must never make the service open (backing files, extents, data files) are listed in
`FORBIDDEN_NAMES`.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diskport.engine.crc32c import crc32c

from tests.unit.engine.crafting import sparse_vmdk, vhdx_metadata_item_offset

KIB = 1024
MIB = 1024 * KIB
# Files a hostile image names, which nothing may open while it is imported.
FORBIDDEN_NAMES = ("/etc/passwd", "/etc/shadow", "backing-base.raw", "external-data.raw", "vmdk-parent.vmdk")


@dataclass(frozen=True)
class HostileFile:
    name: str
    path: Path
    code: str  # the job's error_code
    words: tuple[str, ...]  # each appears in the job's fail_reason
    min_disk: int = 40
    # Refused while its data is decoded (Convert), rather than while its header and tables are read (Fetch).
    refused_in_convert: bool = False


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True, cwd=cwd)


def _patch(path: Path, offset: int, data: bytes) -> Path:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)
    return path


def _u32be(path: Path, offset: int) -> int:
    return int(struct.unpack_from(">I", path.read_bytes(), offset)[0])


def _u32le(path: Path, offset: int) -> int:
    return int(struct.unpack_from("<I", path.read_bytes(), offset)[0])


def _u64be(path: Path, offset: int) -> int:
    return int(struct.unpack_from(">Q", path.read_bytes(), offset)[0])


def _flip_bit(path: Path, offset: int, bit: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _fix_vhd_checksum(path: Path, structure_offset: int, checksum_offset: int, size: int) -> None:
    data = bytearray(path.read_bytes()[structure_offset : structure_offset + size])
    data[checksum_offset : checksum_offset + 4] = bytes(4)
    _patch(path, structure_offset + checksum_offset, struct.pack(">I", ~sum(data) & 0xFFFF_FFFF))


class CorpusBuilder:
    """Builds the corpus in one folder, from a 2 MiB raw disk with data in every 512 KiB block."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.disk = folder / "pattern.raw"
        with self.disk.open("wb") as file:
            for block in range(4):
                file.write(bytes([block + 1]) * 4096 + bytes(512 * KIB - 4096))

    def image(self, name: str, qemu_format: str, *options: str) -> Path:
        """The pattern disk converted by qemu-img, as a fresh file to patch."""
        path = self.folder / name
        _run("qemu-img", "convert", "-f", "raw", "-O", qemu_format, *options, self.disk, path)
        return path

    def created(self, name: str, qemu_format: str, size: str | None, *options: str) -> Path:
        path = self.folder / name
        _run("qemu-img", "create", "-q", "-f", qemu_format, *options, path, *([size] if size else []), cwd=self.folder)
        return path

    def build(self) -> list[HostileFile]:
        return [recipe(self) for recipe in RECIPES]

    @staticmethod
    def recipe_names() -> list[str]:
        """The recipes' names, in the order `build` returns their files (known before anything is built)."""
        return [recipe.__name__ for recipe in RECIPES]


Recipe = Callable[[CorpusBuilder], HostileFile]
RECIPES: list[Recipe] = []
# Files covering each check of design.md's list, run in CI; the whole corpus runs with --run-slow.
IN_CI: set[str] = set()


def recipe(function: Recipe) -> Recipe:
    RECIPES.append(function)
    return function


def ci_recipe(function: Recipe) -> Recipe:
    IN_CI.add(function.__name__)
    return recipe(function)


def _file(name: str, path: Path, code: str, *words: str, min_disk: int = 40, in_convert: bool = False) -> HostileFile:
    return HostileFile(name, path, code, words, min_disk, in_convert)


# --- design.md: qcow2 ---------------------------------------------------------------------------------------------


@recipe
def qcow2_backing_file(corpus: CorpusBuilder) -> HostileFile:
    corpus.created("backing-base.raw", "raw", "2M")
    path = corpus.created("backing.qcow2", "qcow2", None, "-b", "backing-base.raw", "-F", "raw")
    return _file("qcow2-backing-file", path, "IMG.0057", "backing file", "backing-base.raw")


@ci_recipe
def qcow2_backing_file_etc_passwd(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.created("passwd-backing.qcow2", "qcow2", "2M", "-b", "/etc/passwd", "-F", "raw", "-u")
    return _file("qcow2-backing-etc-passwd", path, "IMG.0057", "backing file", "/etc/passwd")


@ci_recipe
def qcow2_external_data_file(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.created("data-file.qcow2", "qcow2", "2M", "-o", f"data_file={corpus.folder / 'external-data.raw'}")
    return _file("qcow2-external-data-file", path, "IMG.0057", "external data file")


@ci_recipe
def qcow2_unknown_incompatible_feature(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("feature.qcow2", "qcow2")
    _patch(path, 72, struct.pack(">Q", _u64be(path, 72) | 1 << 20))
    return _file("qcow2-unknown-incompatible-feature", path, "IMG.0072", "incompatible feature", "20")


@ci_recipe
def qcow2_version_4(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("v4.qcow2", "qcow2"), 4, struct.pack(">I", 4))
    return _file("qcow2-version-4", path, "IMG.0072", "version 4")


@recipe
def qcow_version_1(corpus: CorpusBuilder) -> HostileFile:
    return _file("qcow-version-1", corpus.created("old.qcow", "qcow", "2M"), "IMG.0072", "qcow (version 1)")


@recipe
def qcow2_encrypted(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("encrypted.qcow2", "qcow2"), 32, struct.pack(">I", 2))
    return _file("qcow2-encrypted", path, "IMG.0072", "ncrypted")


@ci_recipe
def qcow2_l1_table_outside_the_file(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("l1-outside.qcow2", "qcow2"), 40, struct.pack(">Q", 1 << 40))
    return _file("qcow2-l1-table-outside-file", path, "IMG.0057", "L1 table", "outside")


@recipe
def qcow2_l2_table_outside_the_file(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("l2-outside.qcow2", "qcow2")
    _patch(path, _u64be(path, 40), struct.pack(">Q", (1 << 63) | (64 << 30)))
    return _file("qcow2-l2-table-outside-file", path, "IMG.0057", "L2 table", "outside the file")


@recipe
def qcow2_data_cluster_outside_the_file(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("cluster-outside.qcow2", "qcow2")
    l2_offset = _u64be(path, _u64be(path, 40)) & 0x00FF_FFFF_FFFF_FE00
    _patch(path, l2_offset, struct.pack(">Q", (1 << 63) | (1 << 40)))
    return _file("qcow2-data-cluster-outside-file", path, "IMG.0057", "past the end of the file")


@ci_recipe
def qcow2_shared_l2_table(corpus: CorpusBuilder) -> HostileFile:
    # 4 KiB clusters: one L2 table maps 2 MiB, so the 4 MiB disk has two L1 entries.
    path = corpus.folder / "shared-l2.qcow2"
    twice = corpus.folder / "pattern-twice.raw"
    twice.write_bytes(corpus.disk.read_bytes() * 2)
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", twice, path)
    l1_offset = _u64be(path, 40)
    _patch(path, l1_offset + 8, path.read_bytes()[l1_offset : l1_offset + 8])
    return _file("qcow2-two-l1-entries-share-an-l2-table", path, "IMG.0057", "share the L2 table")


@recipe
def qcow2_virtual_size_2_to_the_63(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("huge-size.qcow2", "qcow2"), 24, struct.pack(">Q", 1 << 63))
    return _file("qcow2-virtual-size-2^63", path, "IMG.0057", "2^63", "64 TiB")


@ci_recipe
def qcow2_huge_l1_claim(corpus: CorpusBuilder) -> HostileFile:
    # Unbounded memory: a 64 TiB disk whose L1 table claims 2^31 entries (16 GiB).
    path = corpus.image("huge-l1.qcow2", "qcow2")
    _patch(path, 24, struct.pack(">Q", 64 << 40))
    _patch(path, 36, struct.pack(">I", 1 << 31))
    return _file("qcow2-l1-table-of-16-gib", path, "IMG.0057", "L1 table")


@ci_recipe
def qcow2_larger_than_min_disk(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.created("fifty-gib.qcow2", "qcow2", "50G")
    return _file("qcow2-virtual-size-above-min-disk", path, "IMG.0055", "min_disk", min_disk=40)


@ci_recipe
def qcow2_corrupt_compressed_cluster(corpus: CorpusBuilder) -> HostileFile:
    # Only found when the data is decoded: the Convert step refuses it.
    path = corpus.image("bad-compressed.qcow2", "qcow2", "-c")
    l2_offset = _u64be(path, _u64be(path, 40)) & 0x00FF_FFFF_FFFF_FE00
    entry = _u64be(path, l2_offset)
    cluster_bits = _u32be(path, 20)
    offset_mask = (1 << (62 - (cluster_bits - 8))) - 1
    _patch(path, entry & offset_mask, b"\xff" * 64)
    return _file("qcow2-corrupt-compressed-cluster", path, "IMG.0057", "compressed qcow2 cluster", in_convert=True)


# --- design.md: QED, VMDK -----------------------------------------------------------------------------------------


@ci_recipe
def qed(corpus: CorpusBuilder) -> HostileFile:
    return _file("qed", corpus.created("disk.qed", "qed", "2M"), "IMG.0072", "QED")


@ci_recipe
def vmdk_flat_descriptor_naming_etc_passwd(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.folder / "passwd-flat.vmdk"
    path.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 2048 FLAT "/etc/passwd" 0\n'
    )
    return _file("vmdk-descriptor-extent-etc-passwd", path, "IMG.0057", "/etc/passwd")


@recipe
def vmdk_sparse_descriptor_naming_etc_shadow(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("shadow-sparse.vmdk", "vmdk")
    data = path.read_bytes()
    name = b'SPARSE "shadow-sparse.vmdk"'
    _patch(path, data.index(name), b'SPARSE "/etc/shadow"'.ljust(len(name), b" "))
    return _file("vmdk-embedded-descriptor-extent-etc-shadow", path, "IMG.0057", "/etc/shadow")


@ci_recipe
def vmdk_split_sparse_descriptor(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.created("split.vmdk", "vmdk", "2M", "-o", "subformat=twoGbMaxExtentSparse")
    return _file("vmdk-twoGbMaxExtentSparse", path, "IMG.0072", "twoGbMaxExtentSparse")


@recipe
def vmdk_one_extent_of_a_split_disk(corpus: CorpusBuilder) -> HostileFile:
    corpus.created("split2.vmdk", "vmdk", "2M", "-o", "subformat=twoGbMaxExtentSparse")
    return _file("vmdk-one-extent-of-a-split-disk", corpus.folder / "split2-s001.vmdk", "IMG.0072", "multi-file VMDK")


@recipe
def vmdk_child(corpus: CorpusBuilder) -> HostileFile:
    corpus.created("vmdk-parent.vmdk", "vmdk", "2M")
    path = corpus.created("vmdk-child.vmdk", "vmdk", None, "-b", "vmdk-parent.vmdk", "-F", "vmdk")
    return _file("vmdk-differencing-child", path, "IMG.0072", "Differencing", "vmdk-parent.vmdk")


@recipe
def vmdk_grain_directory_outside(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("gd-outside.vmdk", "vmdk"), 56, struct.pack("<Q", 1 << 30))
    return _file("vmdk-grain-directory-outside-file", path, "IMG.0057", "grain directory", "outside")


# --- design.md: one header hidden in another, an image inside an image ----------------------------------------------


@ci_recipe
def qcow2_header_in_a_fixed_vhd(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("disguised.vhd", "vpc", "-o", "subformat=fixed")
    _patch(path, 0, corpus.image("inner.qcow2", "qcow2").read_bytes()[:512])
    return _file("two-signatures-qcow2-in-vhd", path, "IMG.0057", "more than one format")


@recipe
def qcow2_header_in_front_of_raw_data(corpus: CorpusBuilder) -> HostileFile:
    header = corpus.created("passwd-header.qcow2", "qcow2", "2M", "-b", "/etc/passwd", "-F", "raw", "-u")
    path = corpus.folder / "disguised.raw"
    path.write_bytes(header.read_bytes()[:4096] + corpus.disk.read_bytes())
    return _file("qcow2-header-disguised-as-raw", path, "IMG.0057", "/etc/passwd")


@recipe
def image_inside_an_image(corpus: CorpusBuilder) -> HostileFile:
    inner = corpus.image("inner.vmdk", "vmdk")
    path = corpus.folder / "outer.qcow2"
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", inner, path)
    return _file("vmdk-inside-qcow2", path, "IMG.0057", "image inside an image")


# --- VHD, VHDX, VDI, other formats ----------------------------------------------------------------------------------


@recipe
def vhd_differencing(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("diff.vhd", "vpc", "-o", "subformat=dynamic")
    footer = path.stat().st_size - 512
    _patch(path, footer + 60, struct.pack(">I", 4))
    _fix_vhd_checksum(path, footer, 64, 512)
    _patch(path, 0, path.read_bytes()[footer : footer + 512])
    return _file("vhd-differencing", path, "IMG.0072", "Differencing")


@recipe
def vhd_block_table_outside(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("bat-outside.vhd", "vpc", "-o", "subformat=dynamic")
    header_offset = _u64be(path, path.stat().st_size - 512 + 16)
    _patch(path, header_offset + 16, struct.pack(">Q", 1 << 40))
    _fix_vhd_checksum(path, header_offset, 36, 1024)
    return _file("vhd-block-table-outside-file", path, "IMG.0057", "block allocation table", "outside")


@recipe
def vhdx_differencing(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("diff.vhdx", "vhdx", "-o", "subformat=dynamic")
    parameters = vhdx_metadata_item_offset(path, bytes.fromhex("3767a1ca36fa434db3b633f0aa44e76b"))
    (flags,) = struct.unpack_from("<I", path.read_bytes(), parameters + 4)
    _patch(path, parameters + 4, struct.pack("<I", flags | 2))
    return _file("vhdx-differencing", path, "IMG.0072", "Differencing")


@recipe
def vhdx_bat_entry_past_the_end(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("bat-past-end.vhdx", "vhdx", "-o", "subformat=dynamic")
    region_table = path.read_bytes()[192 * KIB : 256 * KIB]
    position = region_table.index(bytes.fromhex("6677c22d23f600429d64115e9bfd4a08"))
    (bat_offset,) = struct.unpack_from("<Q", region_table, position + 16)
    _patch(path, bat_offset, struct.pack("<Q", (1 << 40) | 6))
    return _file("vhdx-bat-entry-past-end", path, "IMG.0057", "VHDX block 0")


@recipe
def vdi_differencing(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("diff.vdi", "vdi"), 76, struct.pack("<I", 4))
    return _file("vdi-differencing", path, "IMG.0072", "Differencing")


@recipe
def vdi_block_map_outside(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("map-outside.vdi", "vdi"), 340, struct.pack("<I", 0xFFFF_FE00))
    return _file("vdi-block-map-outside-file", path, "IMG.0057", "block map", "outside")


@recipe
def vdi_block_past_the_end(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("block-past-end.vdi", "vdi", "-o", "static=on")
    (block_map_offset,) = struct.unpack_from("<I", path.read_bytes(), 340)
    _patch(path, block_map_offset, struct.pack("<I", 100_000))
    return _file("vdi-block-past-end", path, "IMG.0057", "VDI block 0", "past the end")


@recipe
def parallels(corpus: CorpusBuilder) -> HostileFile:
    return _file("parallels", corpus.created("disk.hdd", "parallels", "2M"), "IMG.0072", "Parallels")


@recipe
def luks(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.folder / "disk.luks"
    path.write_bytes(b"LUKS\xba\xbe\x00\x02" + bytes(8192))
    return _file("luks", path, "IMG.0072", "LUKS")


# --- truncations ----------------------------------------------------------------------------------------------------


@recipe
def truncated_qcow2(corpus: CorpusBuilder) -> HostileFile:
    path = _truncate(corpus.image("truncated.qcow2", "qcow2", "-o", "cluster_size=65536"), 0.1)
    return _file("truncated-qcow2", path, "IMG.0057", "outside", "truncated or corrupt")


@recipe
def truncated_stream_optimized_vmdk(corpus: CorpusBuilder) -> HostileFile:
    path = _truncate(corpus.image("truncated.vmdk", "vmdk", "-o", "subformat=streamOptimized"), 0.5)
    return _file("truncated-streamOptimized-vmdk", path, "IMG.0057")


@recipe
def vhd_footer_cut_off(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("cut.vhd", "vpc", "-o", "subformat=dynamic")
    path.write_bytes(path.read_bytes()[:-4096])
    return _file("truncated-vhd-footer-cut-off", path, "IMG.0057", "truncated")


@recipe
def truncated_vhdx(corpus: CorpusBuilder) -> HostileFile:
    path = _truncate(corpus.image("truncated.vhdx", "vhdx", "-o", "subformat=dynamic"), 0.5)
    return _file("truncated-vhdx", path, "IMG.0057")


@recipe
def truncated_vdi(corpus: CorpusBuilder) -> HostileFile:
    path = _truncate(corpus.image("truncated.vdi", "vdi", "-o", "static=on"), 0.3)
    return _file("truncated-vdi", path, "IMG.0057")


@recipe
def empty_file(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.folder / "empty.qcow2"
    path.write_bytes(b"")
    return _file("empty-file", path, "IMG.0057", "empty")


# --- bit flips in checked fields ------------------------------------------------------------------------------------


@recipe
def vhd_footer_bit_flip(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("flip.vhd", "vpc", "-o", "subformat=fixed")
    return _file("bit-flip-vhd-footer-size", _flip_bit(path, path.stat().st_size - 512 + 40, 3), "IMG.0057", "checksum")


@recipe
def vhdx_both_headers_bit_flipped(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("flip.vhdx", "vhdx", "-o", "subformat=fixed")
    _flip_bit(path, 64 * KIB + 8, 0)
    _flip_bit(path, 128 * KIB + 8, 0)
    return _file("bit-flip-vhdx-both-headers", path, "IMG.0057", "header")


@recipe
def qcow2_l1_offset_bit_flip(corpus: CorpusBuilder) -> HostileFile:
    path = _flip_bit(corpus.image("flip.qcow2", "qcow2"), 40 + 2, 7)  # bit 47 of the L1 table offset
    return _file("bit-flip-qcow2-l1-offset", path, "IMG.0057", "L1 table", "outside")


@recipe
def vmdk_grain_directory_bit_flip(corpus: CorpusBuilder) -> HostileFile:
    path = _flip_bit(corpus.image("flip.vmdk", "vmdk"), 56 + 4, 6)  # bit 38 of the grain directory sector
    return _file("bit-flip-vmdk-grain-directory", path, "IMG.0057", "grain directory", "outside")


@recipe
def vdi_block_map_offset_bit_flip(corpus: CorpusBuilder) -> HostileFile:
    path = _flip_bit(corpus.image("flip.vdi", "vdi"), 340 + 3, 6)  # bit 30 of the block map offset
    return _file("bit-flip-vdi-block-map-offset", path, "IMG.0057", "block map", "outside")


# --- size lies ------------------------------------------------------------------------------------------------------


@recipe
def qcow2_size_lie_beyond_its_l1_table(corpus: CorpusBuilder) -> HostileFile:
    # A 2 MiB qcow2 whose header claims 3 TiB, with the one-entry L1 table of a 2 MiB disk.
    path = _patch(corpus.image("size-lie.qcow2", "qcow2"), 24, struct.pack(">Q", 3 << 40))
    return _file("size-lie-qcow2-3-tib-over-a-1-entry-l1", path, "IMG.0057", "L1 table", "needs", min_disk=2048)


@recipe
def vhd_size_lie_beyond_its_block_table(corpus: CorpusBuilder) -> HostileFile:
    # A dynamic VHD of 2 MiB whose header says its block table has no entries (checksum fixed).
    path = corpus.image("size-lie.vhd", "vpc", "-o", "subformat=dynamic")
    header_offset = _u64be(path, path.stat().st_size - 512 + 16)
    _patch(path, header_offset + 28, struct.pack(">I", 0))
    _fix_vhd_checksum(path, header_offset, 36, 1024)
    return _file("size-lie-vhd-block-table-of-0-entries", path, "IMG.0057", "block table", "too small")


@recipe
def vdi_size_lie_beyond_its_block_map(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("size-lie.vdi", "vdi"), 368, struct.pack("<Q", 1 << 40))
    return _file("size-lie-vdi-1-tib-over-a-2-block-map", path, "IMG.0057", "maps only", min_disk=2048)


@recipe
def vmdk_size_lie_beyond_its_grain_tables(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("size-lie.vmdk", "vmdk"), 12, struct.pack("<Q", (100 << 30) // 512))
    return _file("size-lie-vmdk-capacity-100-gib", path, "IMG.0057", "past the end", min_disk=2048)


# --- a second round: files once read differently from qemu, or at a cost out of proportion to the file ------------


def _fix_vhdx_region_table(path: Path) -> None:
    table = bytearray(path.read_bytes()[192 * KIB : 256 * KIB])
    table[4:8] = bytes(4)
    _patch(path, 192 * KIB + 4, struct.pack("<I", crc32c(bytes(table))))


def _vhdx_region_entry(path: Path, region_le: bytes) -> tuple[int, int]:
    """(file position of the region's entry, region offset)."""
    data = path.read_bytes()
    position = 192 * KIB + data[192 * KIB : 256 * KIB].index(region_le)
    return position, int(struct.unpack_from("<Q", data, position + 16)[0])


VHDX_METADATA_REGION_LE = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
VHDX_BAT_REGION_LE = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")


def _stream_grain_table(path: Path) -> int:
    """The file offset of the first grain table of a streamOptimized VMDK qemu-img wrote (directory in the header)."""
    data = path.read_bytes()
    (directory_sector,) = struct.unpack_from("<Q", data, 56)
    (table_sector,) = struct.unpack_from("<I", data, directory_sector * 512)
    return int(table_sector) * 512


def _first_stream_grain(path: Path) -> tuple[int, int]:
    """(file offset of the first compressed grain, its payload size)."""
    data = path.read_bytes()
    table = _stream_grain_table(path)
    grain = next(entry for entry in struct.unpack_from("<512I", data, table) if entry > 1) * 512
    return grain, int(struct.unpack_from("<I", data, grain + 8)[0])


@ci_recipe
def qcow2_two_entries_one_compressed_cluster(corpus: CorpusBuilder) -> HostileFile:
    # Every entry naming one small compressed stream: a 12 MiB file yielded 1 TiB of blocks.
    path = corpus.image("shared-compressed.qcow2", "qcow2", "-c")
    l2_offset = _u64be(path, _u64be(path, 40)) & 0x00FF_FFFF_FFFF_FE00
    _patch(path, l2_offset + 8, path.read_bytes()[l2_offset : l2_offset + 8])
    return _file("qcow2-two-entries-one-compressed-cluster", path, "IMG.0057", "compressed unit")


@recipe
def vmdk_two_entries_one_compressed_grain(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("shared-grain.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    table = _stream_grain_table(path)
    entries = struct.unpack_from("<512I", path.read_bytes(), table)
    index = next(number for number, entry in enumerate(entries) if entry > 1)
    _patch(path, table + 4 * (index + 1), struct.pack("<I", entries[index]))
    return _file("vmdk-stream-two-entries-one-grain", path, "IMG.0057", "compressed unit")


@ci_recipe
def vhdx_metadata_region_of_8_bytes(corpus: CorpusBuilder) -> HostileFile:
    # Once escaped open_disk as struct.error.
    path = corpus.image("metadata-8.vhdx", "vhdx", "-o", "subformat=dynamic")
    position, _offset = _vhdx_region_entry(path, VHDX_METADATA_REGION_LE)
    _patch(path, position + 24, struct.pack("<I", 8))
    _fix_vhdx_region_table(path)
    return _file("vhdx-metadata-region-of-8-bytes", path, "IMG.0057", "metadata region")


@recipe
def vhdx_block_over_its_metadata(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("block-over-metadata.vhdx", "vhdx", "-o", "subformat=dynamic")
    _position, metadata_offset = _vhdx_region_entry(path, VHDX_METADATA_REGION_LE)
    _position, bat_offset = _vhdx_region_entry(path, VHDX_BAT_REGION_LE)
    _patch(path, bat_offset, struct.pack("<Q", metadata_offset | 6))
    return _file("vhdx-block-over-its-metadata", path, "IMG.0057", "overlaps")


@recipe
def vhdx_region_listed_twice(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("region-twice.vhdx", "vhdx", "-o", "subformat=dynamic")
    position, offset = _vhdx_region_entry(path, VHDX_BAT_REGION_LE)
    count = _u32le(path, 192 * KIB + 8)
    duplicate = bytearray(path.read_bytes()[position : position + 32])
    struct.pack_into("<Q", duplicate, 16, offset + MIB)
    _patch(path, 192 * KIB + 16 + 32 * count, bytes(duplicate))
    _patch(path, 192 * KIB + 8, struct.pack("<I", count + 1))
    _fix_vhdx_region_table(path)
    return _file("vhdx-region-listed-twice", path, "IMG.0057", "twice")


@ci_recipe
def vhd_header_copy_disagreeing_with_its_footer(corpus: CorpusBuilder) -> HostileFile:
    # qemu reads the copy at offset 0, the specification the footer: two readings of one file.
    path = corpus.image("copy-disagrees.vhd", "vpc", "-o", "subformat=dynamic")
    _patch(path, 48, struct.pack(">Q", _u64be(path, 48) - MIB))
    _fix_vhd_checksum(path, 0, 64, 512)
    return _file("vhd-header-copy-disagrees-with-footer", path, "IMG.0057", "two ways")


@recipe
def vhd_block_running_past_the_end(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("block-past-eof.vhd", "vpc", "-o", "subformat=dynamic")
    data = path.read_bytes()
    path.write_bytes(data[: -512 - 64 * KIB] + data[-512:])
    return _file("vhd-block-running-past-the-end", path, "IMG.0057", "runs past the end")


@recipe
def vhd_fixed_of_0_bytes(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.created("zero.vhd", "vpc", "0", "-o", "subformat=fixed")
    return _file("vhd-fixed-of-0-bytes", path, "IMG.0057", "0 bytes")


@recipe
def vmdk_stream_optimized_of_an_odd_size(corpus: CorpusBuilder) -> HostileFile:
    # As VMware writes it (directory named by the footer), then 100 bytes longer: two places to read a footer.
    path = corpus.image("odd-size.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    data = bytearray(path.read_bytes())
    header = bytes(data[:512])
    while data.endswith(bytes(512)):
        del data[-512:]
    struct.pack_into("<Q", data, 56, 0xFFFF_FFFF_FFFF_FFFF)
    footer_marker = struct.pack("<QII", 1, 0, 3).ljust(512, b"\0")
    path.write_bytes(bytes(data) + footer_marker + header + bytes(512) + bytes(100))
    return _file("vmdk-stream-optimized-of-an-odd-size", path, "IMG.0057", "two ways")


@recipe
def vmdk_parent_named_in_a_comment(corpus: CorpusBuilder) -> HostileFile:
    descriptor = (
        '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n# parentFileNameHint="vmdk-parent.vmdk"\n'
        'createType="monolithicSparse"\nRW 4096 SPARSE "hint.vmdk"\n'
    )
    path = sparse_vmdk(
        corpus.folder / "hint.vmdk",
        capacity_sectors=4096,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={0: b"data"},
        descriptor=descriptor,
    )
    return _file("vmdk-parent-named-in-a-comment", path, "IMG.0072", "Differencing", "vmdk-parent.vmdk")


@ci_recipe
def vmdk_capacity_0_with_a_descriptor_naming_etc_passwd(corpus: CorpusBuilder) -> HostileFile:
    path = sparse_vmdk(
        corpus.folder / "capacity-0.vmdk",
        capacity_sectors=0,
        grain_sectors=128,
        entries_per_grain_table=512,
        grains={},
        descriptor='# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n',
    )
    return _file("vmdk-capacity-0-embedded-descriptor-etc-passwd", path, "IMG.0057", "capacity of 0")


@recipe
def text_qemu_probes_as_a_vmdk_descriptor(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.folder / "probed.img"
    path.write_bytes(b'# not a disk\n   \nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n')
    return _file("text-qemu-probes-as-vmdk-descriptor", path, "IMG.0057", "/etc/passwd")


@recipe
def bochs(corpus: CorpusBuilder) -> HostileFile:
    header = bytearray(512)
    header[0:23] = b"Bochs Virtual HD Image\0"
    header[32:40] = b"Redolog\0"
    header[48:56] = b"Growing\0"
    struct.pack_into("<I", header, 64, 0x0002_0000)
    path = corpus.folder / "disk.bochs"
    path.write_bytes(bytes(header) + corpus.disk.read_bytes())
    return _file("bochs", path, "IMG.0072", "Bochs")


@recipe
def vmdk_grain_table_of_65536_entries(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("gtes-65536.vmdk", "vmdk"), 44, struct.pack("<I", 65_536))
    return _file("vmdk-grain-table-of-65536-entries", path, "IMG.0057", "entries per grain table")


@recipe
def vmdk_stream_grain_cut_short(corpus: CorpusBuilder) -> HostileFile:
    # Once zero-padded and accepted; qemu fails the read.
    path = corpus.image("grain-cut.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    grain, payload_size = _first_stream_grain(path)
    _patch(path, grain + 8, struct.pack("<I", payload_size // 2))
    return _file("vmdk-stream-grain-cut-short", path, "IMG.0057", "compressed VMDK grain", in_convert=True)


@recipe
def vmdk_stream_grain_inflating_short(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("grain-short.vmdk", "vmdk", "-o", "subformat=streamOptimized")
    grain, _payload_size = _first_stream_grain(path)
    short = zlib.compress(b"x" * 100)
    _patch(path, grain + 8, struct.pack("<I", len(short)) + short)
    return _file("vmdk-stream-grain-inflating-short", path, "IMG.0057", "compressed VMDK grain", in_convert=True)


@recipe
def qcow2_refcount_table_of_0_clusters(corpus: CorpusBuilder) -> HostileFile:
    path = _patch(corpus.image("refcount-0.qcow2", "qcow2"), 56, struct.pack(">I", 0))
    return _file("qcow2-refcount-table-of-0-clusters", path, "IMG.0057", "refcount table of 0 clusters")


@recipe
def qcow2_snapshot_count_beyond_the_file(corpus: CorpusBuilder) -> HostileFile:
    path = corpus.image("snapshots.qcow2", "qcow2")
    last_cluster = (path.stat().st_size - 1) // 65_536 * 65_536
    _patch(path, 60, struct.pack(">IQ", 60_000, last_cluster))
    return _file("qcow2-snapshot-count-beyond-the-file", path, "IMG.0057", "snapshot table")


@recipe
def vdi_every_block_one_stored_block(corpus: CorpusBuilder) -> HostileFile:
    # A 2 MiB VDI claiming 128 MiB (all its block map has room for), every block the same stored one: the old
    # 256 MiB slack let it through.
    path = corpus.image("one-block.vdi", "vdi", "-o", "static=on")
    block_map_offset = _u32le(path, 340)
    _patch(path, 368, struct.pack("<Q", 128 * MIB))
    _patch(path, 384, struct.pack("<I", 128))
    _patch(path, block_map_offset, struct.pack("<I", 0) * 128)
    return _file("vdi-every-block-one-stored-block", path, "IMG.0057", "more stored data")
