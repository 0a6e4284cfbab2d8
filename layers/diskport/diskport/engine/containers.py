"""Files that are not disks: archives and compressed streams are refused, an OVA is opened at the disk it holds.

A file that matches no disk format would otherwise become a raw disk of its own bytes. Before that happens, its
first bytes are compared with the signatures of the archives and compressed streams people upload by mistake
(tar, gzip, xz, bzip2, zstd, zip, 7z), and a raw disk must be a whole number of 512-byte sectors.

An OVA is a tar archive whose first member is an OVF descriptor (XML) naming the disks, each a member of the tar.
The disk is read in place through a `WindowSource` over its member: no extraction, no temporary copy. Every tar
header is checked like any other table (checksum, sizes inside the file, a bounded number of members), and the OVF
descriptor is bounded and parsed without DTDs or entities.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from xml.etree import ElementTree

from .errors import BrokenImageError, UnsupportedImageError
from .inspection import human_size, printable
from .limits import SECTOR
from .sources import ByteSource, WindowSource

TAR_BLOCK = 512
# An OVA holds a descriptor, a manifest, a certificate and its disks: a few members, rarely more than a dozen.
MAX_TAR_MEMBERS = 256
MAX_OVF_BYTES = 1024 * 1024
MAX_PAX_BYTES = 64 * 1024

# (signature, offset, what the file is, what to do with it); gzip with its one compression method (deflate), so
# that two bytes alone never turn a raw disk away
ARCHIVE_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x1f\x8b\x08", 0, "gzip file", "decompress it first (gunzip FILE) and upload the disk image inside"),
    (b"\xfd7zXZ\x00", 0, "xz file", "decompress it first (unxz FILE) and upload the disk image inside"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd file", "decompress it first (unzstd FILE) and upload the disk image inside"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7z archive", "extract the disk image from it (7z x FILE) and upload that"),
    (b"PK\x03\x04", 0, "zip archive", "extract the disk image from it (unzip FILE) and upload that"),
    (b"PK\x05\x06", 0, "zip archive", "extract the disk image from it (unzip FILE) and upload that"),
    (b"PK\x07\x08", 0, "zip archive", "extract the disk image from it (unzip FILE) and upload that"),
)
TAR_HINT = "extract the disk image from it (tar -xf FILE) and upload that"
DISK_ONLY_HINT = "upload the disk image itself (raw, qcow2, VMDK, VHD, VHDX, VDI or an OVA)"


@dataclass(frozen=True)
class TarMember:
    name: str
    offset: int  # of its data
    size: int
    is_file: bool


@dataclass(frozen=True)
class OvfDisk:
    disk_id: str
    file_name: str


def refuse_archives(head: bytes) -> None:
    """Refuse a compressed stream or an archive other than an OVA, saying what it is and what to do."""
    for signature, offset, what, hint in ARCHIVE_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            raise UnsupportedImageError(f"This is a {what}, not a disk image: {hint}.")
    # bzip2: "BZh", the block size digit, then the magic of a first block (or of the end of an empty stream).
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        raise UnsupportedImageError(
            "This is a bzip2 file, not a disk image: decompress it first (bunzip2 FILE) and upload the disk image "
            "inside."
        )


def is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def refuse_non_disk_raw(head: bytes, size: int) -> None:
    """A file taken for a raw disk must be a whole number of sectors; one that is not, and reads as text, is said
    to be text (a whole-sector file stays a raw disk whatever its bytes: a disk may hold text)."""
    if size % SECTOR and _is_text(head):
        raise UnsupportedImageError(f"This is a text file, not a disk image: {DISK_ONLY_HINT}.")
    if size % SECTOR:
        raise UnsupportedImageError(
            f"The file matches no disk image format, and as a raw disk its size ({size} bytes) is not a whole "
            f"number of 512-byte sectors: {DISK_ONLY_HINT}."
        )


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The sniffed bytes may end inside a multi-byte character.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(character.isprintable() or character in "\t\r\n\f" for character in text)


def ova_disk_source(source: ByteSource, *, disk_name: str | None = None) -> WindowSource:
    """The disk an OVA holds, as a window over its member; a plain tar, or an ambiguous OVA, is refused."""
    members = read_tar_members(source)
    descriptors = [member for member in members if member.is_file and member.name.lower().endswith(".ovf")]
    if not descriptors:
        names = ", ".join(f"'{member.name}'" for member in members[:5]) or "no file"
        raise UnsupportedImageError(f"This is a tar archive ({names}), not a disk image: {TAR_HINT}.")
    descriptor = descriptors[0]
    if descriptor.size > MAX_OVF_BYTES:
        raise BrokenImageError(
            f"The OVF descriptor '{descriptor.name}' is {human_size(descriptor.size)}, more than the "
            f"{human_size(MAX_OVF_BYTES)} any real one needs: export the OVA again."
        )
    disks = parse_ovf_disks(_read_exactly(source, descriptor.offset, descriptor.size, "OVF descriptor"))
    chosen = _chosen_disk(disks, disk_name)
    by_name = {member.name: member for member in members if member.is_file}
    member = by_name.get(chosen.file_name)
    if member is None:
        raise BrokenImageError(
            f"The OVF descriptor names the disk file '{chosen.file_name}', which is not in the OVA: export the OVA "
            "again."
        )
    return WindowSource(source, member.offset, member.size)


def _chosen_disk(disks: list[OvfDisk], disk_name: str | None) -> OvfDisk:
    listed = ", ".join(f"{disk.disk_id} ({disk.file_name})" for disk in disks)
    if disk_name is not None:
        for disk in disks:
            if disk_name in (disk.disk_id, disk.file_name):
                return disk
        raise UnsupportedImageError(
            f"The OVA has no disk '{disk_name}'; its disks are: {listed}. Name one of them in ova_disk."
        )
    if not disks:
        raise BrokenImageError("The OVF descriptor of this OVA names no disk: export the OVA again.")
    if len(disks) > 1:
        raise UnsupportedImageError(
            f"The OVA holds {len(disks)} disks: {listed}. Name the one to import in ova_disk (its disk id or file "
            "name; diskport import --ova-disk NAME)."
        )
    return disks[0]


def read_tar_members(source: ByteSource) -> list[TarMember]:
    """Every member of a tar archive, each header checked: checksum, size, data inside the file."""
    members: list[TarMember] = []
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    for _ in range(4 * MAX_TAR_MEMBERS):  # a member may carry a long-name or pax header block before it
        if offset + TAR_BLOCK > source.size:
            raise BrokenImageError("The tar archive ends inside a member or without its end marker: upload it again.")
        header = source.read_at(offset, TAR_BLOCK)
        if header == bytes(TAR_BLOCK):
            return members
        _check_header(header, offset)
        size = _tar_number(header[124:136], "size", offset)
        type_flag = header[156:157]
        data_offset = offset + TAR_BLOCK
        if "size" in pax:
            size = _pax_number(pax["size"])
        if data_offset + size > source.size:
            raise BrokenImageError(
                f"The tar header at offset {offset} gives a member of {size} bytes, past the end of the file: the "
                "archive is truncated or corrupt; upload it again."
            )
        next_offset = data_offset + -(-size // TAR_BLOCK) * TAR_BLOCK
        if type_flag in (b"x", b"g"):
            if size > MAX_PAX_BYTES:
                raise BrokenImageError(f"The tar extended header at offset {offset} is larger than any real one.")
            if type_flag == b"x":
                pax = _parse_pax(_read_exactly(source, data_offset, size, "tar extended header"))
        elif type_flag == b"L":
            if size > MAX_PAX_BYTES:
                raise BrokenImageError(f"The tar long name at offset {offset} is larger than any real one.")
            long_name = (
                _read_exactly(source, data_offset, size, "tar long name")
                .split(b"\x00", 1)[0]
                .decode("utf-8", "replace")
            )
        else:
            name = pax.get("path") or long_name or _header_name(header)
            if type_flag == b"S":
                raise UnsupportedImageError(
                    f"The tar member '{printable(name.encode())}' is a sparse file: {TAR_HINT}."
                )
            members.append(TarMember(_member_name(name), data_offset, size, type_flag in (b"0", b"\x00", b"7")))
            if len(members) > MAX_TAR_MEMBERS:
                raise BrokenImageError(
                    f"The tar archive holds more than {MAX_TAR_MEMBERS} members, more than any OVA: {TAR_HINT}."
                )
            long_name, pax = None, {}
        offset = next_offset
    raise BrokenImageError("The tar archive holds too many header blocks for an OVA: it is corrupt or crafted.")


def _check_header(header: bytes, offset: int) -> None:
    stored = header[148:156].split(b"\x00", 1)[0].strip(b" ")
    unsigned = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
    try:
        expected = int(stored, 8)
    except ValueError:
        expected = -1
    if expected != unsigned:
        raise BrokenImageError(
            f"The tar header at offset {offset} has a wrong checksum: the archive is corrupt; upload it again."
        )


def _tar_number(field: bytes, what: str, offset: int) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256, for members of 8 GiB or more
        if field[:1] == b"\xff":
            raise BrokenImageError(f"The tar header at offset {offset} gives a negative {what}.")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise BrokenImageError(
            f"The tar header at offset {offset} has an unreadable {what}: the archive is corrupt; upload it again."
        ) from None


def _pax_number(text: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise BrokenImageError("A tar extended header gives an unreadable member size: upload the archive again.")
    return int(text)


def _parse_pax(data: bytes) -> dict[str, str]:
    """Records `LENGTH key=value\\n`, each length counting the whole record."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position : position + 1] != b"\x00":
        length_text, space, _ = data[position : position + 21].partition(b" ")
        if not space or not length_text.isdigit() or int(length_text) <= len(length_text) + 1:
            raise BrokenImageError("A tar extended header is malformed: the archive is corrupt; upload it again.")
        record = data[position : position + int(length_text)]
        if len(record) != int(length_text) or not record.endswith(b"\n"):
            raise BrokenImageError("A tar extended header is malformed: the archive is corrupt; upload it again.")
        key, _, value = record[len(length_text) + 1 : -1].partition(b"=")
        fields[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        position += len(record)
    return fields


def _header_name(header: bytes) -> str:
    name = header[0:100].split(b"\x00", 1)[0]
    prefix = header[345:500].split(b"\x00", 1)[0] if header[257:263] == b"ustar\x00" else b""
    joined = prefix + b"/" + name if prefix else name
    return joined.decode("utf-8", "replace")


def _member_name(name: str) -> str:
    """Member names as an OVF descriptor refers to them: without a leading './'."""
    normalized = posixpath.normpath(name) if name else name
    return normalized[2:] if normalized.startswith("./") else normalized


def _read_exactly(source: ByteSource, offset: int, length: int, what: str) -> bytes:
    data = source.read_at(offset, length)
    if len(data) != length:
        raise BrokenImageError(f"The {what} ends early at the end of the file: upload the archive again.")
    return data


def parse_ovf_disks(document: bytes) -> list[OvfDisk]:
    """The disks an OVF descriptor lists (DiskSection/Disk → References/File), without DTDs or entities."""
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise BrokenImageError("The OVF descriptor declares a DTD or entities, which OVF never needs: refused.")
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as error:
        raise BrokenImageError(f"The OVF descriptor is not well-formed XML ({error}): export the OVA again.") from None
    files: dict[str, str] = {}
    for element in root.iter():
        if _local(element.tag) == "File":
            attributes = _local_attributes(element)
            if attributes.get("compression") or attributes.get("chunkSize"):
                raise UnsupportedImageError(
                    f"The OVA's file '{printable(attributes.get('href', '').encode())}' is compressed or chunked, "
                    "which is not supported: export the OVA without compression."
                )
            files[attributes.get("id", "")] = attributes.get("href", "")
    disks: list[OvfDisk] = []
    for element in root.iter():
        if _local(element.tag) != "Disk":
            continue
        attributes = _local_attributes(element)
        disk_id = printable(attributes.get("diskId", "").encode())
        file_name = files.get(attributes.get("fileRef", ""))
        if file_name is None:
            continue  # a disk with no file is an empty disk the VM creates: nothing to import
        if "/" in file_name or "\\" in file_name or ":" in file_name or file_name in ("", ".", ".."):
            raise BrokenImageError(
                f"The OVF descriptor names the disk file '{printable(file_name.encode())}' outside the OVA, which "
                "is not allowed: export the OVA again with its disks inside."
            )
        disks.append(OvfDisk(disk_id or file_name, printable(file_name.encode())))
    return disks


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _local_attributes(element: ElementTree.Element) -> dict[str, str]:
    return {_local(key): value for key, value in element.attrib.items()}


def disk_in_container(
    source: ByteSource, head: bytes, formats: list[str], *, ova_disk: str | None = None
) -> WindowSource | None:
    """The disk inside an OVA; None for a file that is a disk itself. Archives and non-disk files are refused."""
    if formats:
        if ova_disk is not None:
            raise UnsupportedImageError(f"ova_disk names a disk of an OVA, but this file is a {formats[0]} image.")
        return None
    refuse_archives(head)
    if is_tar(head):
        disk = ova_disk_source(source, disk_name=ova_disk)
        inner_head = disk.read_at(0, min(len(head), disk.size))
        if is_tar(inner_head):
            raise UnsupportedImageError(f"The OVA's disk is itself a tar archive: {TAR_HINT}.")
        return disk
    if ova_disk is not None:
        raise UnsupportedImageError("ova_disk names a disk of an OVA, but this file is not an OVA (a tar archive).")
    refuse_non_disk_raw(head, source.size)
    return None
