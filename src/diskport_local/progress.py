"""A one-line progress bar for the terminal; elsewhere (logs, CI) a plain line per stage and per quarter."""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty()
        self._last_line = ""
        self._last_milestone: tuple[str, int] | None = None

    def show(self, percent: float, stage: str, detail: str = "") -> None:
        """`stage` names the step (uploading, RUNNING convert...); `detail` changes within it."""
        percent = max(0.0, min(100.0, percent))
        filled = round(BAR_WIDTH * percent / 100)
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:5.1f}%  {stage}  {detail}".rstrip()
        if self._interactive:
            if line != self._last_line:
                padding = " " * max(0, len(self._last_line) - len(line))
                self._stream.write(f"\r{line}{padding}")
                self._stream.flush()
        else:
            milestone = (stage, int(percent // 25))
            if milestone != self._last_milestone:
                self._stream.write(line + "\n")
                self._stream.flush()
                self._last_milestone = milestone
        self._last_line = line

    def finish(self) -> None:
        if self._interactive and self._last_line:
            self._stream.write("\n")
            self._stream.flush()
        self._last_line = ""
        self._last_milestone = None
