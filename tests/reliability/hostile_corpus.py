"""A corpus of crafted image files: every refusal of design.md's "Hostile images", plus truncations, bit flips
and size lies. Each file comes with the IMS code its import must fail with and words its reason must hold.

Files are built from small qemu-img images and patched at known offsets (the formats' specifications give
them); names that a file must never make the service open (backing files, extents, data files) are listed in
`FORBIDDEN_NAMES`.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.unit.engine.crafting import vhdx_metadata_item_offset

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
