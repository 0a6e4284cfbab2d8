"""Ranged S3 GETs that read only their range, so reading a large object in pieces does not hold it whole.

moto answers every GetObject by copying the whole object into memory (`FakeKey.value`) and then slicing out
the requested range: each ranged read of a 4 GiB image costs 8 GiB and the time to copy them, where S3
reads only the range. `install()` makes a GetObject with a Range header slice the object's file instead.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_RANGED = threading.local()


class RangedContent:
    """An object's bytes as `len()` and slices, read from its buffer only when sliced."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.contentsize)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(len(self))
        with self._key.lock:
            self._key._value_buffer.seek(start)
            return bytes(self._key._value_buffer.read(max(0, stop - start)))


def install() -> None:
    """Make moto's ranged GetObject read only the range (idempotent)."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(S3Response.get_object, "reads_ranges_only", False):
        return
    whole_value: Any = FakeKey.__dict__["value"]  # the property itself

    def value(key: Any) -> Any:
        if getattr(_RANGED, "active", False):
            return RangedContent(key)
        return whole_value.fget(key)

    FakeKey.value = property(value, whole_value.fset)  # type: ignore[assignment,method-assign]
    original_get_object = S3Response.get_object

    @functools.wraps(original_get_object)
    def get_object(response: Any) -> Any:
        ranged = bool(response.headers.get("range")) and not response.querystring.get("partNumber")
        _RANGED.active = ranged
        try:
            return original_get_object(response)
        finally:
            _RANGED.active = False

    get_object.reads_ranges_only = True  # type: ignore[attr-defined]
    S3Response.get_object = get_object  # type: ignore[method-assign,assignment]
