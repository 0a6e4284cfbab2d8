"""A one-line progress bar for the terminal; elsewhere (logs, CI) a plain line per stage and per quarter.

Each line ends with the time spent so far and the rate: bytes per second where the bytes are known (uploads,
exports), otherwise the pace of the percentage and the time it leaves at that pace (following a job).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1  # a terminal line redrawn ten times a second reads as moving; more is only output
MIB = 1024 * 1024


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty()
        self._clock = clock
        self._started = clock()
        self._first_progress: tuple[float, float] | None = None  # (time, percent) when the percentage first moved
        self._last_line = ""
        self._last_drawn = float("-inf")
        self._last_progress = ""
        self._last_milestone: tuple[str, int] | None = None

    def show(self, percent: float, stage: str, detail: str = "", *, done_bytes: int | None = None) -> None:
        """`stage` names the step (uploading, RUNNING convert...); `detail` changes within it."""
        percent = max(0.0, min(100.0, percent))
        filled = round(BAR_WIDTH * percent / 100)
        now = self._clock()
        progress = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:5.1f}%  {stage}  {detail}".rstrip()
        line = f"{progress}  {self._pace(now, percent, done_bytes)}"
        if self._interactive:
            # Redrawn when the progress itself changes; the time and the rate alone refresh a few times a second.
            due = progress != self._last_progress or now - self._last_drawn >= REDRAW_SECONDS
            if line != self._last_line and due:
                padding = " " * max(0, len(self._last_line) - len(line))
                self._stream.write(f"\r{line}{padding}")
                self._stream.flush()
                self._last_drawn, self._last_progress, self._last_line = now, progress, line
            return
        else:
            milestone = (stage, int(percent // 25))
            if milestone != self._last_milestone:
                self._stream.write(line + "\n")
                self._stream.flush()
                self._last_milestone = milestone
        self._last_line = line

    def _pace(self, now: float, percent: float, done_bytes: int | None) -> str:
        elapsed = now - self._started
        shown = duration(elapsed)
        if done_bytes is not None:
            return f"{shown}  {done_bytes / elapsed / MIB:.1f} MiB/s" if elapsed > 0 else shown
        if self._first_progress is None:
            if 0 < percent < 100:
                self._first_progress = (now, percent)
            return shown
        since, from_percent = self._first_progress
        if now <= since or percent <= from_percent or percent >= 100:
            return shown
        per_second = (percent - from_percent) / (now - since)
        return f"{shown}  {60 * per_second:.1f}%/min  ~{duration((100 - percent) / per_second)} left"

    def finish(self) -> None:
        if self._interactive and self._last_line:
            self._stream.write("\n")
            self._stream.flush()
        self._last_line = self._last_progress = ""
        self._last_milestone = None
