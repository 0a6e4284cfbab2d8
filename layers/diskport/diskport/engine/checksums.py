"""SHA-256 of disk blocks, the checksum EBS wants for each.

hashlib (OpenSSL) hashes each block and releases the GIL while it does, so the engine's worker threads hash side by
side. A compiled 16-lane SHA-256 was measured and left out: a convert worker is bound by its share of EBS's requests,
not by hashing (docs/engine.md, Checksums).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def block_digests(blocks: Sequence[bytes]) -> list[bytes]:
    """The SHA-256 digest of each block, in order."""
    return [hashlib.sha256(block).digest() for block in blocks]
