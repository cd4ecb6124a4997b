"""Errors a user can act on. The CLI prints them without a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ShardwiseError(Exception):
    """Base class: a message that names the field or object at fault."""


class InvalidInput(ShardwiseError):
    """A manifest, file row or argument is not acceptable."""


class NotFound(ShardwiseError):
    """A named object (resource, store key, sample id) does not exist."""


class CorruptObject(ShardwiseError):
    """A stored object does not match its recorded sha256."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


class Superseded(ShardwiseError):
    """A job's input changed under it (samples it would train on were forgotten since its revision).

    refs/compute: the checkpoints it made of the slices before the first changed one (still exact
    for its revision), which the reconciler keeps and continues from."""

    def __init__(self, message: str, refs: list | None = None, compute: float = 0.0):
        super().__init__(message)
        self.refs = refs or []
        self.compute = compute


class Forbidden(ShardwiseError):
    """The Kubernetes API server refused a request of this user (RBAC or an admission policy)."""


class ClusterUnavailable(ShardwiseError):
    """No kube context, or its API server cannot be reached."""


class StoreUnavailable(ShardwiseError):
    """The object store cannot be reached or is not configured."""


@contextlib.contextmanager
def reading(what: str) -> Iterator[None]:
    """Reading a user's text file: a decode or OS error becomes InvalidInput naming `what`."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{what}: not UTF-8 text ({e.reason} at byte {e.start + 1})") from None
    except OSError as e:  # a folder, no permission, ...
        raise InvalidInput(f"{what}: cannot be read: {e.strerror or e}") from None
