"""Raw: a file that matches no format is the disk itself."""

from __future__ import annotations

from collections.abc import Iterator

from ..inspection import MetadataReader
from ..layout import Segment, stored

SECTOR = 512


class RawLayout:
    format_name = "raw"
    subformat = "raw"
    # The disk is the file rounded up to a sector, as qemu reads it: the tail past the file's end reads as zeros.
    stored_unit_size = SECTOR

    def __init__(self, virtual_size: int) -> None:
        self.virtual_size = virtual_size

    def units(self, start: int, end: int) -> Iterator[Segment]:
        yield stored(0, self.virtual_size, 0)


def open_raw(metadata: MetadataReader) -> RawLayout:
    virtual_size = -(-metadata.file_size // SECTOR) * SECTOR
    metadata.require_virtual_size(virtual_size)
    return RawLayout(virtual_size)
