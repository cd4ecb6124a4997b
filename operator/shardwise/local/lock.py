"""One reconciler per store and namespace on this machine: an advisory file lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path


class ReconcilerLock:
    def __init__(self, store_uri: str, namespace: str):
        d = Path(os.environ.get("SHARDWISE_LOCK_DIR", Path.home() / ".cache" / "shardwise" / "locks"))
        d.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256(f"{store_uri}|{namespace}".encode()).hexdigest()[:16]
        self.path = d / f"{h}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
