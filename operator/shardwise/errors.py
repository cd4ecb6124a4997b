"""Errors a user can act on. The CLI prints them without a traceback."""

from __future__ import annotations


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


class StoreUnavailable(ShardwiseError):
    """The object store cannot be reached or is not configured."""
