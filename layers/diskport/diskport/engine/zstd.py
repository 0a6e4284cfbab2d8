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
    """Up to `max_length` bytes inflated from the zstd frames at the start of `data`, as qemu reads a cluster.

    qemu streams the stored bytes through one decompression context until the cluster is full, so skippable frames
    and several frames in a row are read in turn; once the output is full, whatever follows (the sector padding)
    is ignored. A frame still open when the cluster is full, or the input ending first, gives fewer bytes, which
    the caller refuses.
    """
    pieces: list[bytes] = []
    produced = 0
    remaining = data
    try:
        while produced < max_length and remaining:
            decompressor = _zstd.ZstdDecompressor(options=_OPTIONS)
            piece: bytes = decompressor.decompress(remaining, max_length=max_length - produced)
            pieces.append(piece)
            produced += len(piece)
            if not decompressor.eof:
                if produced >= max_length and decompressor.decompress(b"", max_length=1):
                    raise ZstdDecompressionError("the frame inflates to more than one cluster")
                if produced >= max_length and not decompressor.eof and decompressor.needs_input:
                    raise ZstdDecompressionError("the cluster is full before its frame ends")
                break
            remaining = decompressor.unused_data
            if not piece and remaining == data:
                break  # nothing consumed: not a frame
    except (_zstd.ZstdError, EOFError, ValueError) as error:
        raise ZstdDecompressionError(str(error)) from error
    return b"".join(pieces)
