"""The engine's errors: why it refuses an image, or why the bytes of one could not be read.

Each carries `reason`, a sentence that names the problem and says what to do about it. The engine knows nothing of
the service around it: the service turns these into its own error codes in one place (`diskport.errors`).

    DiskError
    ├── RefusedImageError          the file is not a disk the engine reads
    │   ├── BrokenImageError       broken or unsafe: tables that lie, a backing file, data that does not inflate
    │   └── UnsupportedImageError  a format or sub-format the engine does not read: a child disk, encryption, QED
    └── SourceReadError            the source could not give its bytes: the file changed, was deleted, is denied
"""

from __future__ import annotations


class DiskError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusedImageError(DiskError):
    """The file's content is not a disk the engine reads; nothing of its data was decoded, or what was is refused."""


class BrokenImageError(RefusedImageError):
    """The image is broken or unsafe: inconsistent or crafted tables, a backing file, a size that lies."""


class UnsupportedImageError(RefusedImageError):
    """The image is in a format, or sub-format, that the engine does not read."""


class SourceReadError(DiskError):
    """A byte source could not give the bytes asked for, for a reason that is the file's own.

    Passing trouble (throttling, a service fault) is not one: a source lets that escape as its own error, for the
    caller's retry policy, and raises this with that error as its cause only where retrying would not help.
    """
