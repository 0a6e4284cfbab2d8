"""A one-line progress bar for the terminal; plain lines, only when something changes, elsewhere (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty()
        self._last_line = ""

    def show(self, percent: float, label: str) -> None:
        percent = max(0.0, min(100.0, percent))
        filled = round(BAR_WIDTH * percent / 100)
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:5.1f}%  {label}"
        if line == self._last_line:
            return
        if self._interactive:
            padding = " " * max(0, len(self._last_line) - len(line))
            self._stream.write(f"\r{line}{padding}")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._last_line = line

    def finish(self) -> None:
        if self._interactive and self._last_line:
            self._stream.write("\n")
            self._stream.flush()
        self._last_line = ""
