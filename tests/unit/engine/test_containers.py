"""Only disks become disks: archives and compressed files are refused, an OVA imports the disk it holds."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest
from diskport.engine import BLOCK_SIZE, BrokenImageError, DiskError, LocalFileSource, UnsupportedImageError, open_disk
from diskport.engine.sources import WindowSource
from diskport.errors import ims_error_of

from .images import ImageCase, requires_qemu_img

SECTOR_DATA = bytes(range(256)) * 2 * 64  # 32 KiB of binary data: a raw disk of whole sectors


def _refusal(path: Path, ova_disk: str | None = None) -> DiskError:
    with LocalFileSource(path) as source, pytest.raises(DiskError) as caught:
        open_disk(source, ova_disk=ova_disk).close()
    return caught.value


def _assert_unsupported(path: Path, *words: str, ova_disk: str | None = None) -> None:
    error = _refusal(path, ova_disk)
    assert isinstance(error, UnsupportedImageError), error.reason
    assert ims_error_of(error).code == "IMG.0072"
    for word in words:
        assert word in error.reason, error.reason


def _ovf(*disks: tuple[str, str]) -> bytes:
    files = "".join(f'<File ovf:id="file-{disk_id}" ovf:href="{name}"/>' for disk_id, name in disks)
    entries = "".join(
        f'<Disk ovf:diskId="{disk_id}" ovf:fileRef="file-{disk_id}" ovf:capacity="1" '
        'ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>'
        for disk_id, _ in disks
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">'
        f"<References>{files}</References><DiskSection><Info>Virtual disks</Info>{entries}</DiskSection>"
        '<VirtualSystem ovf:id="vm"><Info>A virtual machine</Info></VirtualSystem></Envelope>'
    ).encode()


def _tar(path: Path, members: list[tuple[str, bytes]], tar_format: int = tarfile.USTAR_FORMAT) -> Path:
    with tarfile.open(path, "w", format=tar_format) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# --- refused, with what to do ---------------------------------------------------------------------------------


def test_a_text_file_is_refused_as_not_a_disk(tmp_path: Path) -> None:
    # Given a 26-byte text file
    note = tmp_path / "notes.img"
    note.write_text("these are not a disk, no.\n")
    # When it is imported, then it is refused as a text file
    _assert_unsupported(note, "text file", "not a disk image")


def test_a_raw_file_that_is_not_whole_sectors_is_refused(tmp_path: Path) -> None:
    # Given 1,000 bytes of binary data matching no format
    odd = tmp_path / "disk.raw"
    odd.write_bytes(bytes(range(250)) * 4)
    # When it is imported, then it is refused: a raw disk is whole 512-byte sectors
    _assert_unsupported(odd, "1000 bytes", "512-byte sectors")


@pytest.mark.parametrize(
    ("kind", "compress", "hint"),
    [
        ("gzip file", gzip.compress, "decompress it first"),
        ("xz file", lzma.compress, "decompress it first"),
        ("bzip2 file", bz2.compress, "decompress it first"),
    ],
)
def test_a_compressed_disk_is_refused_saying_to_decompress_it(
    tmp_path: Path, kind: str, compress: object, hint: str
) -> None:
    # Given a raw disk compressed as a stream
    packed = tmp_path / "disk.img"
    packed.write_bytes(compress(SECTOR_DATA))  # type: ignore[operator]
    # When it is imported, then the refusal names what it is and what to do
    _assert_unsupported(packed, f"This is a {kind}", hint)


def test_a_zstd_file_is_refused_saying_to_decompress_it(tmp_path: Path) -> None:
    # Given a file with a zstd frame header (magic, then a frame descriptor)
    packed = tmp_path / "disk.img.zst"
    packed.write_bytes(b"\x28\xb5\x2f\xfd\x04\x58" + SECTOR_DATA)
    _assert_unsupported(packed, "This is a zstd file", "unzstd")


def test_a_zip_archive_is_refused_saying_to_extract_it(tmp_path: Path) -> None:
    archive = tmp_path / "disk.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        packed.writestr("disk.raw", SECTOR_DATA)
    _assert_unsupported(archive, "This is a zip archive", "unzip")


def test_a_7z_archive_is_refused_saying_to_extract_it(tmp_path: Path) -> None:
    archive = tmp_path / "disk.7z"
    archive.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + SECTOR_DATA)
    _assert_unsupported(archive, "This is a 7z archive", "7z x")


def test_a_tar_archive_without_a_descriptor_is_refused_saying_to_extract_it(tmp_path: Path) -> None:
    # Given a tar holding a raw disk (no OVF descriptor: not an OVA)
    archive = _tar(tmp_path / "disk.tar", [("disk.raw", SECTOR_DATA)])
    # When it is imported, then it is refused as a tar archive, naming its members
    _assert_unsupported(archive, "tar archive", "'disk.raw'", "tar -xf")


def test_an_ova_with_two_disks_and_none_named_is_refused_listing_them(tmp_path: Path) -> None:
    # Given an OVA whose descriptor lists two disks
    ova = _tar(
        tmp_path / "vm.ova",
        [
            ("vm.ovf", _ovf(("vmdisk1", "disk1.vmdk"), ("vmdisk2", "disk2.vmdk"))),
            ("disk1.vmdk", SECTOR_DATA),
            ("disk2.vmdk", SECTOR_DATA),
        ],
    )
    # When it is imported without naming a disk, then the refusal lists both and says how to choose
    _assert_unsupported(ova, "2 disks", "vmdisk1 (disk1.vmdk)", "vmdisk2 (disk2.vmdk)", "ova_disk")
    # And naming a disk it does not hold is refused with the same list
    _assert_unsupported(ova, "no disk 'disk3.vmdk'", "vmdisk1 (disk1.vmdk)", ova_disk="disk3.vmdk")


def test_an_ova_disk_named_by_its_id_or_file_name_is_the_one_opened(tmp_path: Path) -> None:
    # Given an OVA holding two raw disks of different contents
    second = bytes(reversed(SECTOR_DATA)) * 2
    ova = _tar(
        tmp_path / "vm.ova",
        [
            ("vm.ovf", _ovf(("vmdisk1", "disk1.img"), ("vmdisk2", "disk2.img"))),
            ("disk1.img", SECTOR_DATA),
            ("disk2.img", second),
        ],
    )
    # When the second disk is named, by id or by file name, then that disk is read
    for name in ("vmdisk2", "disk2.img"):
        with LocalFileSource(ova) as source, open_disk(source, ova_disk=name) as disk:
            assert (disk.format, disk.virtual_size) == ("raw", len(second))
            assert disk.read(0, len(second)) == second


def test_naming_an_ova_disk_for_a_file_that_is_not_an_ova_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "disk.raw"
    plain.write_bytes(SECTOR_DATA)
    _assert_unsupported(plain, "not an OVA", ova_disk="vmdisk1")


def test_an_ova_whose_descriptor_names_a_missing_member_is_rejected(tmp_path: Path) -> None:
    ova = _tar(tmp_path / "vm.ova", [("vm.ovf", _ovf(("vmdisk1", "disk1.vmdk")))])
    error = _refusal(ova)
    assert type(error) is BrokenImageError and "'disk1.vmdk', which is not in the OVA" in error.reason


def test_an_ova_whose_descriptor_points_outside_it_is_rejected(tmp_path: Path) -> None:
    ova = _tar(tmp_path / "vm.ova", [("vm.ovf", _ovf(("vmdisk1", "../etc/passwd"))), ("disk1.vmdk", SECTOR_DATA)])
    error = _refusal(ova)
    assert type(error) is BrokenImageError and "outside the OVA" in error.reason


def test_an_ova_descriptor_with_entities_is_rejected(tmp_path: Path) -> None:
    laughs = b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol">]><Envelope>&lol;</Envelope>'
    ova = _tar(tmp_path / "vm.ova", [("vm.ovf", laughs), ("disk1.vmdk", SECTOR_DATA)])
    error = _refusal(ova)
    assert type(error) is BrokenImageError and "DTD" in error.reason


def test_a_tar_header_with_a_wrong_checksum_is_rejected(tmp_path: Path) -> None:
    ova = _tar(tmp_path / "vm.ova", [("vm.ovf", _ovf(("vmdisk1", "disk1.img"))), ("disk1.img", SECTOR_DATA)])
    data = bytearray(ova.read_bytes())
    data[124:136] = b"00000077777\x00"  # the descriptor's size, changed without its checksum
    ova.write_bytes(bytes(data))
    error = _refusal(ova)
    assert type(error) is BrokenImageError and "checksum" in error.reason


def test_a_tar_member_claiming_to_run_past_the_file_is_rejected(tmp_path: Path) -> None:
    ova = _tar(tmp_path / "vm.ova", [("vm.ovf", _ovf(("vmdisk1", "disk1.img"))), ("disk1.img", SECTOR_DATA)])
    data = bytearray(ova.read_bytes())
    second_header = 512 + -(-len(_ovf(("vmdisk1", "disk1.img"))) // 512) * 512
    header = bytearray(data[second_header : second_header + 512])
    header[124:136] = b"77777777777\x00"
    header[148:156] = b"        "
    header[148:156] = f"{sum(header):06o}\x00 ".encode()
    data[second_header : second_header + 512] = header
    ova.write_bytes(bytes(data))
    error = _refusal(ova)
    assert type(error) is BrokenImageError and "past the end of the file" in error.reason


def test_a_window_source_never_reads_outside_its_member() -> None:
    class Recorded:
        size = 4096

        def __init__(self) -> None:
            self.reads: list[tuple[int, int]] = []

        def read_at(self, offset: int, length: int) -> bytes:
            self.reads.append((offset, length))
            return bytes(length)

    outer = Recorded()
    window = WindowSource(outer, 1024, 1000)
    assert window.size == 1000 and len(window.read_at(900, 500)) == 100 and window.read_at(1000, 10) == b""
    assert outer.reads == [(1924, 100)]
    with pytest.raises(ValueError):
        WindowSource(outer, 4000, 200)


# --- an OVA from qemu-img, read in place --------------------------------------------------------------------------


@requires_qemu_img
@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_an_ova_imports_its_stream_optimized_vmdk_byte_for_byte(
    tmp_path: Path, image_cases: dict[str, ImageCase], tar_format: int
) -> None:
    # Given an OVA made of an OVF descriptor and a streamOptimized VMDK built by qemu-img
    vmdk = image_cases["vmdk-streamOptimized"]
    ova = _tar(
        tmp_path / "appliance.ova",
        [
            ("appliance.ovf", _ovf(("vmdisk1", "appliance-disk1.vmdk"))),
            ("appliance.mf", b"SHA256(x)= 0\n"),
            ("appliance-disk1.vmdk", vmdk.path.read_bytes()),
        ],
        tar_format,
    )
    expected = vmdk.oracle.read_bytes()
    # When the OVA is opened and its virtual disk read
    with LocalFileSource(ova) as source, open_disk(source) as disk:
        assert (disk.format, disk.subformat, disk.virtual_size) == ("vmdk", "streamOptimized", len(expected))
        end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
        blocks = {block.index: block.data for block in disk.iter_blocks(0, end)}
    # Then every block equals qemu-img's raw conversion of the VMDK, and the rest is zeros
    for index in range(end // BLOCK_SIZE):
        want = expected[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")
        assert blocks.get(index, bytes(BLOCK_SIZE)) == want, f"block {index} differs"


def _mutated_ova_opens_or_is_refused(ova: bytes, changes: list[tuple[int, int]], tmp_path: Path) -> None:
    data = bytearray(ova)
    for position, value in changes:
        data[position % len(data)] = value
    path = tmp_path / "mutated.ova"
    path.write_bytes(bytes(data))
    # A refusal is an answer; anything else (an IndexError, a hang) is a bug.
    with LocalFileSource(path) as source, contextlib.suppress(DiskError):
        open_disk(source).close()


def test_a_mutated_ova_is_opened_or_refused_never_crashes(tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ova = _tar(
        tmp_path / "vm.ova",
        [("vm.ovf", _ovf(("vmdisk1", "disk1.img"))), ("disk1.img", SECTOR_DATA)],
        tarfile.PAX_FORMAT,
    ).read_bytes()
    # The headers and the descriptor are the first blocks: mutate there, where the parsing happens.
    position = st.integers(min_value=0, max_value=4096)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8))
    def check(changes: list[tuple[int, int]]) -> None:
        _mutated_ova_opens_or_is_refused(ova, changes, tmp_path)

    check()
