"""zstd decompression with bounded memory: the stdlib module from Python 3.14, backports.zstd before it."""

from __future__ import annotations

try:
    from compression import zstd as _zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python < 3.14
    from backports import zstd as _zstd  # type: ignore[no-redef,unused-ignore]

# A qcow2 cluster is at most 2 MiB; refusing larger windows keeps a crafted frame from reserving gigabytes.
WINDOW_LOG_MAX = 23
_OPTIONS = {_zstd.DecompressionParameter.window_log_max: WINDOW_LOG_MAX}


class ZstdDecompressionError(Exception):
    """The stored bytes are not a zstd frame this service will inflate."""


def decompress_zstd(data: bytes, max_length: int) -> bytes:
    """Up to `max_length` bytes inflated from the zstd frame at the start of `data` (padding after it ignored)."""
    try:
        decompressor = _zstd.ZstdDecompressor(options=_OPTIONS)
        inflated: bytes = decompressor.decompress(data, max_length=max_length)
    except (_zstd.ZstdError, EOFError, ValueError) as error:
        raise ZstdDecompressionError(str(error)) from error
    return inflated
