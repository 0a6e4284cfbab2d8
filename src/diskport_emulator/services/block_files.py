"""A snapshot's blocks on disk: one sparse file per snapshot, each block at its index times the block size.

The emulated EBS keeps only each block's checksum and token in memory, so importing a disk does not grow
the process by the disk's size. Every file lives in one temporary folder, removed when local mode stops.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path


class BlockFiles:
    """Sparse block files under one folder of their own."""

    def __init__(self, block_size: int, root: Path | None = None) -> None:
        self.block_size = block_size
        self._root = root
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        with self._lock:
            if self._root is None or not self._root.is_dir():
                self._root = Path(tempfile.mkdtemp(prefix="diskport-ebs-"))
                atexit.register(shutil.rmtree, self._root, ignore_errors=True)  # a process that never stops local mode
            return self._root

    def path(self, snapshot_id: str) -> Path:
        return self.root / f"{snapshot_id}.blocks"

    def write(self, snapshot_id: str, index: int, data: bytes) -> None:
        descriptor = os.open(self.path(snapshot_id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(descriptor, data, index * self.block_size)
        finally:
            os.close(descriptor)

    def read(self, snapshot_id: str, index: int) -> bytes:
        descriptor = os.open(self.path(snapshot_id), os.O_RDONLY)
        try:
            data = os.pread(descriptor, self.block_size, index * self.block_size)
        finally:
            os.close(descriptor)
        return data.ljust(self.block_size, b"\0")

    def remove(self, snapshot_id: str) -> None:
        self.path(snapshot_id).unlink(missing_ok=True)

    def remove_all(self) -> None:
        with self._lock:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
