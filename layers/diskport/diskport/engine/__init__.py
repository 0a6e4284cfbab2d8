"""The disk image engine: tell an image's format by content, refuse what is unsafe, read its virtual disk.

    with LocalFileSource("disk.qcow2") as source, open_disk(source) as disk:
        for block in disk.iter_blocks(0, disk.virtual_size):
            put_snapshot_block(block.index, block.data, block.checksum)

Every check of an image's header and top-level tables runs inside `open_disk`, before any data is decoded;
second-level tables are checked when first read, and `allocated_ranges()` reads (and so checks) them all.
What the engine refuses, or cannot read, it raises as a `DiskError` (errors.py) with a reason a person can act on.
"""

from .detection import detect_formats, open_disk
from .disk import BLOCK_SIZE, Block, DiskImage
from .errors import BrokenImageError, DiskError, RefusedImageError, SourceReadError, UnsupportedImageError
from .layout import Segment, SegmentKind
from .limits import InspectionLimits
from .sources import ByteSource, LocalFileSource

__all__ = [
    "BLOCK_SIZE",
    "Block",
    "BrokenImageError",
    "ByteSource",
    "DiskError",
    "DiskImage",
    "InspectionLimits",
    "LocalFileSource",
    "RefusedImageError",
    "Segment",
    "SegmentKind",
    "SourceReadError",
    "UnsupportedImageError",
    "detect_formats",
    "open_disk",
]
