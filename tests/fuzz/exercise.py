"""What every parser fuzzer does with one input: what the pipeline does with an image file."""

from __future__ import annotations

import itertools

from diskport.engine import BLOCK_SIZE, DiskError, InspectionLimits, open_disk
from diskport.errors import ims_error_of

from .seeds import BytesSource

# A fuzzed header may claim a huge disk; reading its first blocks is enough to reach every decoder.
BLOCKS_READ = 8
# Smaller than the service's limits, so a fuzzed table hits a cap in milliseconds rather than seconds.
FUZZ_LIMITS = InspectionLimits(max_metadata_bytes=8 * 1024 * 1024, max_table_bytes=4 * 1024 * 1024)


def exercise(data: bytes) -> str:
    """Open, map and read the image; answer "accepted" or the IMS code it was refused with.

    Any exception that is not a DiskError escapes: that is a crash the fuzzers report.
    """
    try:
        with open_disk(BytesSource(data), limits=FUZZ_LIMITS) as disk:
            disk.allocated_ranges()
            end = -(-disk.virtual_size // BLOCK_SIZE) * BLOCK_SIZE
            for _block in itertools.islice(disk.iter_blocks(0, end), BLOCKS_READ):
                pass
            disk.read(max(0, disk.virtual_size - 4096), 8192)
    except DiskError as error:
        return ims_error_of(error).code
    return "accepted"
