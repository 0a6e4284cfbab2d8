"""Raw: a file that matches no format is the disk itself."""

from __future__ import annotations

from collections.abc import Iterator

from ..inspection import MetadataReader
from ..layout import Segment, stored


class RawLayout:
    format_name = "raw"
    subformat = "raw"
    stored_unit_size = 0

    def __init__(self, virtual_size: int) -> None:
        self.virtual_size = virtual_size

    def units(self, start: int, end: int) -> Iterator[Segment]:
        yield stored(0, self.virtual_size, 0)


def open_raw(metadata: MetadataReader) -> RawLayout:
    metadata.require_virtual_size(metadata.file_size)
    return RawLayout(metadata.file_size)
