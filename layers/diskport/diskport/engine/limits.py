"""The bounds that keep a lying header from costing unbounded reads, memory or time."""

from __future__ import annotations

from dataclasses import dataclass

# The unit every format counts the disk in, and qemu rounds it to.
SECTOR = 512
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB


@dataclass(frozen=True)
class InspectionLimits:
    """Caps applied while an image is inspected and its tables are read.

    A real image stays far inside every default: a fully allocated 1 TiB qcow2 with 64 KiB clusters has 128 MiB
    of L2 tables and a 2 MiB L1 table. A crafted one hits a cap and is refused before it costs anything.
    """

    # EBS volumes end at 64 TiB; an image that claims more cannot become a volume and is refused.
    max_virtual_size: int = 64 * TIB
    # Bytes of metadata (headers, tables) read while inspecting the image and mapping its allocation.
    max_metadata_bytes: int = 1 * GIB
    # The largest single table held in memory at once (qcow2 L1, VMDK grain directory, VHD/VHDX BAT, VDI map).
    max_table_bytes: int = 64 * MIB
    # The embedded or standalone VMDK descriptor, and the qcow2 header with its extensions.
    max_header_bytes: int = 64 * KIB
    # Ranges returned by allocated_ranges(); beyond it, nearby ranges are merged (they stay a superset).
    max_allocation_ranges: int = 65_536
    # Second-level tables (qcow2 L2, VMDK grain tables) kept decoded between lookups.
    table_cache_bytes: int = 16 * MIB
