"""Run the CLI as a person does, on a pseudo-terminal: what it draws, and what Ctrl-C does to it."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

ANSWER_SECONDS = 60


class Terminal:
    """`diskport ARGUMENTS` with its standard input, output and error on one pseudo-terminal."""

    def __init__(self, arguments: Sequence[str], environment: dict[str, str]) -> None:
        controller, terminal = pty.openpty()
        self._controller = controller
        self.process = subprocess.Popen(
            [sys.executable, "-m", "diskport_local.cli", *arguments],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env={**os.environ, **environment},
            close_fds=True,
        )
        os.close(terminal)
        self.screen = ""

    def _read_some(self, seconds: float) -> bool:
        ready, _, _ = select.select([self._controller], [], [], seconds)
        if not ready:
            return True
        try:
            data = os.read(self._controller, 65536)
        except OSError:  # the program ended and closed its side
            return False
        if not data:
            return False
        self.screen += data.decode("utf-8", "replace")
        return True

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + ANSWER_SECONDS
        while time.monotonic() < deadline:
            found = re.search(pattern, self.screen)
            if found:
                return found
            if not self._read_some(0.1) and self.process.poll() is not None:
                break
        raise AssertionError(f"never saw {pattern!r}; the terminal shows:\n{self.screen}")

    def interrupt(self) -> None:
        """What Ctrl-C does: SIGINT to the program."""
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> int:
        """The exit status, once the program has ended and everything it wrote is read."""
        deadline = time.monotonic() + ANSWER_SECONDS
        while self._read_some(0.1) and time.monotonic() < deadline:
            if self.process.poll() is not None and not select.select([self._controller], [], [], 0.1)[0]:
                break
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self._controller)
        return code
