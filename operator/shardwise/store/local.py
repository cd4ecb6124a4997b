"""LocalStore: the store on a folder. Atomic writes by temp file, fsync and rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shardwise.errors import InvalidInput, NotFound, StoreUnavailable
from shardwise.store.base import Store, check_key, check_prefix

SIDECAR = ".sha256"
TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    except FileNotFoundError:
        # a concurrent delete() removed the folder, now empty, between the two calls
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


class StoreMissing(StoreUnavailable):
    """The store (a folder, an S3 bucket) does not exist, and the caller asked not to create it.

    Defined here for both kinds of store (shardwise.store, which opens S3 stores, imports this module)."""


class LocalStore(Store):
    def __init__(self, root: str | Path, *, create: bool = True):
        """create=False: a missing folder is StoreMissing (naming it as given), not made: a
        command that only reads must not leave an empty store behind a mistyped path."""
        self.root = Path(root).absolute()
        if not create and not self.root.is_dir():
            raise StoreMissing(f"store folder {root} {'is not a folder' if self.root.exists() else 'does not exist'}")
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(f"store folder {self.root} cannot be created: {e.strerror}") from None
        self.uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        name = check_key(key).rsplit("/", 1)[-1]
        if name.endswith(SIDECAR) or name.startswith(TMP_PREFIX):
            raise InvalidInput(f"store key {key!r}: names ending in {SIDECAR} or starting with {TMP_PREFIX} "
                               "are reserved")
        return self.root / key

    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        path = self._path(key)
        side = path.with_name(path.name + SIDECAR)
        try:
            self._put(path, side, data, sha256)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            if side.is_file():  # the key names a folder, so no object owned this sidecar
                side.unlink()
            # S3 allows both "a" and "a/b"; a folder cannot, so say which key is at fault
            raise InvalidInput(f"store key {key!r} collides with another key in {self.uri} "
                               "(one key is a folder of the other)") from None

    @staticmethod
    def _put(path: Path, side: Path, data: bytes, sha256: str | None) -> None:
        # The sidecar goes first: a crash between the two writes leaves an object that
        # fails verification (detected), never a verified object with the wrong content.
        if sha256 is not None:
            _atomic_write(side, sha256.encode())
        elif side.exists():
            side.unlink()
        _atomic_write(path, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {key!r} in {self.uri}") from None

    def stored_sha256(self, key: str) -> str | None:
        side = self._path(key)
        side = side.with_name(side.name + SIDECAR)
        try:
            return side.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root
        check_prefix(prefix)
        # walk only the deepest folder the prefix names, not the whole store
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / head if head else base
        if not start.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(start):
            for f in files:
                if f.startswith(TMP_PREFIX) or f.endswith(SIDECAR):
                    continue
                key = os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + SIDECAR)):
            try:
                p.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
        # drop folders left empty, up to the root
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
