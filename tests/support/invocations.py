"""What a function runtime's record of invocations (`functions.invocations`) shows about how they overlapped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def most_at_once(invocations: Sequence[Any], function: str) -> int:
    """The largest number of the function's invocations that were running at the same moment."""
    edges = sorted(
        [(invocation.started, 1) for invocation in invocations if invocation.function == function]
        + [(invocation.ended, -1) for invocation in invocations if invocation.function == function]
    )
    running = peak = 0
    for _moment, change in edges:
        running += change
        peak = max(peak, running)
    return peak
