"""The CLI's own errors: a command that cannot run as asked, and a command a person interrupted."""

from __future__ import annotations

from diskport.errors import DiskportError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


class CommandError(DiskportError):
    """A command that cannot run as asked (a missing file, an image not ready to export...)."""

    code = "IMG.0001"
    http_status = 400


class CommandInterruptedError(Exception):
    """Ctrl-C, after the command has cleaned up: `message` says what was left and how to go on."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
