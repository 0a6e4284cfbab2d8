"""SHA-256 of disk blocks, the checksum EBS wants for each: 16 blocks at once where the CPU allows it.

Hashing is most of what converting a disk costs. On a CPU with AVX-512 the compiled `_multibuffer_sha256` hashes 16
equal-length blocks side by side: on the reference machine about twice as fast per core as hashlib (OpenSSL with
SHA-NI), and about eight times as fast as OpenSSL without SHA-NI, which many AVX-512 Xeons lack. Elsewhere, or when
the package was installed without a C compiler, hashlib does it. Both give the same digests; the tests check one
against the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

LANES = 16
# With fewer blocks than this, the unused lanes cost more than hashing the blocks one by one with hashlib.
FEWEST_BLOCKS_FOR_LANES = 8


def _lane_digests() -> Callable[[Sequence[bytes]], list[bytes]] | None:
    try:
        from diskport.engine import _multibuffer_sha256
    except ImportError:  # installed without a C compiler
        return None
    return _multibuffer_sha256.digests if _multibuffer_sha256.supported() else None


LANE_DIGESTS = _lane_digests()


def hashing_method() -> str:
    """How this process hashes blocks, for logs and the bench."""
    return "16-lane AVX-512" if LANE_DIGESTS is not None else "hashlib"


def block_digests(blocks: Sequence[bytes]) -> list[bytes]:
    """The SHA-256 digest of each block, in order. The GIL is released while hashing either way."""
    lane_digests = LANE_DIGESTS
    if lane_digests is None:
        return [hashlib.sha256(block).digest() for block in blocks]
    digests: list[bytes] = []
    for position in range(0, len(blocks), LANES):
        group = blocks[position : position + LANES]
        # Lanes hash messages of one length only; a small group, or one of unequal lengths, goes one by one.
        if len(group) >= FEWEST_BLOCKS_FOR_LANES and all(len(block) == len(group[0]) for block in group):
            digests.extend(lane_digests(group))
        else:
            digests.extend(hashlib.sha256(block).digest() for block in group)
    return digests
