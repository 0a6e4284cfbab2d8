"""Raw: a file that matches no format is the disk itself."""

from __future__ import annotations

from ..inspection import MetadataReader
from ..layout import StoredLayout
from ..limits import SECTOR


def open_raw(metadata: MetadataReader) -> StoredLayout:
    # The disk is the file rounded up to a sector, as qemu reads it: the tail past the file's end reads as zeros.
    virtual_size = -(-metadata.file_size // SECTOR) * SECTOR
    metadata.require_virtual_size(virtual_size)
    return StoredLayout("raw", "raw", virtual_size, stored_unit_size=SECTOR)
