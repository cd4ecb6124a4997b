"""The store interface shared by LocalStore and S3Store.

Keys are '/'-separated relative paths built only from validated names
(see shardwise.store.layout). Every write is atomic: a reader sees the whole
old object or the whole new one, never part of one.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

from shardwise.errors import CorruptObject, InvalidInput


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root or alias another key."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"store key {key!r} is not a clean relative path")
    if any(c in key for c in "\\\x00\n\r"):
        raise InvalidInput(f"store key {key!r} holds a forbidden character")
    return key


def check_prefix(prefix: str) -> str:
    """A list() prefix: its folder part must be a clean key, its last part may be partial.

    This keeps list("../") or list("/etc/") from walking outside the store root.
    """
    head, _, _ = prefix.rpartition("/")
    if head:
        check_key(head)
    if any(c in prefix for c in "\\\x00\n\r"):
        raise InvalidInput(f"store prefix {prefix!r} holds a forbidden character")
    return prefix


class Store(ABC):
    """Object storage with atomic puts and sha256-verified objects."""

    uri: str

    # -- raw objects -------------------------------------------------------
    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        """Write atomically. When sha256 is given it is stored with the object."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raise NotFound when absent."""

    @abstractmethod
    def stored_sha256(self, key: str) -> str | None:
        """The sha256 recorded at write time, or None if none was recorded."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys under prefix (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; absent keys are fine (idempotent)."""

    # -- verified objects (checkpoints, payloads) --------------------------
    def put_verified(self, key: str, data: bytes) -> str:
        """Store data with its sha256; return the hex digest."""
        digest = sha256_hex(data)
        self.put_bytes(key, data, sha256=digest)
        return digest

    def get_verified(self, key: str, expected_sha256: str | None = None) -> bytes:
        """Read and check against the recorded (and, if given, expected) sha256."""
        data = self.get_bytes(key)
        actual = sha256_hex(data)
        recorded = self.stored_sha256(key)
        for want in (recorded, expected_sha256):
            if want is not None and want != actual:
                raise CorruptObject(
                    f"object {key!r} in {self.uri} is corrupt: sha256 {actual[:12]}… "
                    f"does not match the recorded {want[:12]}…",
                    key=key,
                )
        return data

    # -- JSON helpers -------------------------------------------------------
    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, json.dumps(obj, indent=1, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def delete_prefix(self, prefix: str) -> builtins.list[str]:
        keys = self.list(prefix)
        for k in keys:
            self.delete(k)
        return keys
