"""S3Store: the store on S3-compatible object storage through the minio SDK.

A PUT is atomic in S3 (an object becomes visible whole or not at all), so no
temp-and-rename is needed. The sha256 travels as user metadata. Connection
errors and transient server errors are retried with exponential backoff, so a
restarting server does not fail a run.

Purge on a versioned bucket: S3 keeps every version of an object, and a plain
DELETE only hides them behind a delete marker. So this store keeps one version
per key: a delete removes every version (and delete marker) of the key, and a
put removes the versions it replaces. It refuses a bucket whose default
object-lock retention would make a forgotten sample's checkpoint undeletable,
and never sets a retention or a legal hold itself.
"""

from __future__ import annotations

import builtins
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.objectlockconfig import ObjectLockConfig

from shardwise.errors import NotFound, StoreUnavailable
from shardwise.store.base import Store, check_key, check_prefix

log = logging.getLogger("shardwise.store")

T = TypeVar("T")
META = "sha256"  # sent as x-amz-meta-sha256
MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound"}
AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
# Codes a restarting or overloaded server answers with: worth another attempt.
TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed"}
VERSIONED = {"Enabled", "Suspended"}  # a Suspended bucket still holds the versions written while Enabled
# Answers that mean "no object-lock configuration": none set, or a server without object lock.
NO_LOCK_CODES = {"ObjectLockConfigurationNotFoundError", "NotImplemented", "MethodNotAllowed"}
PERMISSIONS = ("s3:GetBucketVersioning, s3:GetBucketObjectLockConfiguration, s3:ListBucketVersions "
               "and s3:DeleteObjectVersion")


@dataclass(frozen=True)
class ObjectVersion:
    """One stored version of a key (an unversioned bucket has one per key, id "null")."""

    key: str  # relative to the store prefix
    version_id: str | None
    is_latest: bool
    is_delete_marker: bool
    size: int | None = None


def _is_latest(o: Any) -> bool:
    """The SDK gives a listed version's IsLatest as the XML text ("true") on some servers."""
    return str(o.is_latest).lower() == "true"


def retention_blocks_purge(bucket: str, config: ObjectLockConfig | None) -> str | None:
    """Why a bucket's object-lock configuration forbids storing checkpoints in it, or None. Pure.

    A default retention locks every version written to the bucket for its period: a purge
    would fail (COMPLIANCE), or need a bypass header that shardwise never sends (GOVERNANCE).
    Object lock enabled without a default rule is fine: nothing shardwise writes is locked.
    """
    if config is None or config.mode is None:
        return None
    unit = (config.duration_unit or "Days").lower()
    return (f"bucket {bucket!r} has a default retention ({config.mode}, {config.duration} {unit}): checkpoints "
            "in it could not be purged on forget; use a bucket without default retention")


def _endpoint_of(client: Minio) -> str:
    # The SDK keeps the endpoint only privately; it is worth naming in every error.
    base = getattr(client, "_base_url", None)
    host = getattr(base, "host", None)
    if not host:
        return "unknown endpoint"
    return f"{'https' if getattr(base, 'is_https', False) else 'http'}://{host}"


class S3Store(Store):
    def __init__(self, client: Minio, bucket: str, prefix: str = "", *, attempts: int = 6, backoff: float = 0.25):
        """attempts/backoff: tries per operation and the first pause (doubled each time; 6 and
        0.25 s wait 7.75 s in all, enough for a `weed` server to restart)."""
        self.client, self.bucket = client, bucket
        # the prefix is part of every key, so it must be as clean as one
        self.prefix = check_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        self.attempts, self.backoff = max(1, attempts), backoff
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = _endpoint_of(client)
        self._versioned: bool | None = None  # learnt by check_bucket(), before the first write

    # -- plumbing ---------------------------------------------------------------
    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run fn, retrying transient failures; every other S3 failure becomes StoreUnavailable.

        fn must be safe to repeat from scratch (a put builds its body stream inside fn).
        """
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except S3Error as e:
                if e.code in AUTH_CODES:
                    raise StoreUnavailable(f"S3 refused {what} on {self._where()}: {e.code} "
                                           "(check credentials)") from None
                if e.code == "NoSuchBucket":
                    raise StoreUnavailable(f"S3 {self._where()} does not exist (during {what})") from None
                if e.code not in TRANSIENT_CODES:
                    raise StoreUnavailable(f"S3 {what} on {self._where()} failed: {e.code}: {e.message}") from None
                cause = f"{e.code}"
            # MinioException here: a 5xx without an S3 error body (ServerError) or a non-XML answer
            # (InvalidResponseError), e.g. from a proxy in front of a server that is down.
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:  # OSError: ConnectionError
                cause = type(e).__name__
            if attempt == self.attempts:
                raise StoreUnavailable(
                    f"S3 endpoint {self.endpoint} unreachable for {what} on bucket {self.bucket!r} "
                    f"after {attempt} attempts: {cause}"
                ) from None
            log.warning("S3 %s on %s failed (%s): retry %d of %d in %.2g s",
                        what, self._where(), cause, attempt, self.attempts - 1, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def ensure_bucket(self) -> None:
        def go() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as e:
                    # another process created it between the check and the create: fine
                    if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        self._call("bucket check", go)
        self.check_bucket()

    def check_bucket(self) -> bool:
        """Refuse a bucket with a default object-lock retention; learn whether it is versioned.

        Runs once per store, before its first write (open_store runs it on open). Returns
        whether the bucket keeps versions. Credentials that may not read these settings are
        refused too: the purge guarantee cannot be checked without them.
        """
        if self._versioned is not None:
            return self._versioned

        def go() -> bool:
            try:
                lock: ObjectLockConfig | None = self.client.get_object_lock_config(self.bucket)
            except S3Error as e:
                if e.code not in NO_LOCK_CODES:
                    raise
                lock = None
            why = retention_blocks_purge(self.bucket, lock)
            if why:
                raise StoreUnavailable(f"S3 {why} (at {self.endpoint})")
            try:
                status = self.client.get_bucket_versioning(self.bucket).status
            except S3Error as e:
                if e.code not in ("NotImplemented", "MethodNotAllowed"):
                    raise
                status = None
            return status in VERSIONED

        try:
            self._versioned = self._call("object-lock and versioning check", go)
        except StoreUnavailable as e:
            if "check credentials" in str(e):
                raise StoreUnavailable(f"{e}; the store needs {PERMISSIONS} on it, besides reading, writing "
                                       "and listing objects, so that a forget can be shown purged") from None
            raise
        return self._versioned

    # -- Store -------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        # Without sha256 the put also drops metadata an older version of the object had.
        # No retention and no legal hold, ever: every object must stay deletable by a purge.
        meta: dict[str, str | list[str] | tuple[str]] | None = {META: sha256} if sha256 else None
        k = self._k(key)
        versioned = self.check_bucket()
        self._call(f"put {key}", lambda: self.client.put_object(self.bucket, k, io.BytesIO(data), len(data),
                                                                    metadata=dict(meta) if meta else None))
        if versioned:  # the replaced version would outlive a later purge of this key: remove it now
            self._remove_versions(f"put {key}", k, keep_latest=True)

    def get_bytes(self, key: str, *, version_id: str | None = None) -> bytes:
        """version_id: one stored version (see list_versions); the latest when None."""
        k = self._k(key)

        def go() -> bytes:
            try:
                resp = self.client.get_object(self.bucket, k, version_id=version_id)
            except S3Error as e:
                if e.code in MISSING_CODES or e.code == "NoSuchVersion":
                    raise NotFound(f"no object {key!r}{f' version {version_id}' if version_id else ''} "
                                   f"in {self.uri}") from None
                raise
            try:
                return resp.read()  # inside the retry: a body cut short by a restart is read again
            finally:
                resp.close()
                resp.release_conn()

        return self._call(f"get {key}", go)

    def _stat_meta(self, what: str, k: str) -> dict[str, str] | None:
        """The object's headers (lower-cased), or None when absent."""

        def go() -> dict[str, str] | None:
            try:
                st = self.client.stat_object(self.bucket, k)
            except S3Error as e:
                if e.code in MISSING_CODES:
                    return None
                raise
            return {m.lower(): v for m, v in (st.metadata or {}).items()}

        return self._call(what, go)

    def stored_sha256(self, key: str) -> str | None:
        meta = self._stat_meta(f"stat {key}", self._k(key))
        return None if meta is None else meta.get(f"x-amz-meta-{META}")

    def exists(self, key: str) -> bool:
        return self._stat_meta(f"stat {key}", self._k(key)) is not None

    def list(self, prefix: str = "") -> list[str]:
        full = self.prefix + check_prefix(prefix)
        n = len(self.prefix)
        return self._call(
            f"list {prefix or '(all)'}",
            lambda: sorted(o.object_name[n:] for o in self.client.list_objects(self.bucket, full, recursive=True)
                           if not o.is_dir),
        )

    def _versions_of(self, full_prefix: str) -> builtins.list[Any]:
        """Every version and delete marker under a full key prefix (raw SDK objects)."""
        return [o for o in self.client.list_objects(self.bucket, full_prefix, recursive=True, include_version=True)
                if not o.is_dir]

    def list_versions(self, prefix: str = "") -> builtins.list[ObjectVersion]:
        """Every stored version and delete marker under prefix, by key (newest first where the server says)."""
        full = self.prefix + check_prefix(prefix)
        n = len(self.prefix)
        found = self._call(f"list versions {prefix or '(all)'}", lambda: self._versions_of(full))
        out = [ObjectVersion(o.object_name[n:], o.version_id, _is_latest(o),
                             bool(o.is_delete_marker), o.size) for o in found]
        return sorted(out, key=lambda v: (v.key, not v.is_latest))

    def _remove_versions(self, what: str, k: str, *, keep_latest: bool = False) -> None:
        """Remove every version and delete marker of exactly key k (but the newest, if keep_latest)."""

        def go() -> None:
            for o in self._versions_of(k):
                if o.object_name != k or (keep_latest and _is_latest(o)):
                    continue  # the listing is by prefix: "a/k" also lists "a/k2"
                try:
                    # "null" is a real version id (written while unversioned or suspended): pass it as is
                    self.client.remove_object(self.bucket, k, version_id=o.version_id or None)
                except S3Error as e:
                    if e.code in ("NoSuchVersion", *MISSING_CODES):
                        continue  # removed meanwhile by another purge
                    if e.code == "AccessDenied":
                        raise StoreUnavailable(self._locked(k[len(self.prefix):], o.version_id)) from None
                    raise

        self._call(what, go)

    def _locked(self, key: str, version: str | None) -> str:
        return (f"S3 refused to delete {key!r} version {version} on {self._where()}: AccessDenied (an object-lock "
                f"retention or legal hold set on it outside shardwise, or credentials without {PERMISSIONS}); "
                "the purge is not complete until it is gone")

    def delete(self, key: str) -> None:
        """Remove every version of the key, so no old version survives a purge. Idempotent."""
        k = self._k(key)
        self.check_bucket()
        self._remove_versions(f"delete {key}", k)

    def delete_prefix(self, prefix: str) -> builtins.list[str]:
        """Remove every version of every key under prefix, in batches; returns the keys that were live."""
        full = self.prefix + check_prefix(prefix)
        n = len(self.prefix)
        self.check_bucket()

        def go() -> builtins.list[str]:
            found = self._versions_of(full)
            errors = [e for e in self.client.remove_objects(
                self.bucket, [DeleteObject(o.object_name, o.version_id or None) for o in found])
                      if e.code not in ("NoSuchVersion", *MISSING_CODES)]
            if errors:
                e = errors[0]
                if e.code == "AccessDenied":
                    raise StoreUnavailable(self._locked((e.name or "")[n:], e.version_id)
                                           + (f" ({len(errors) - 1} more refused)" if len(errors) > 1 else ""))
                raise StoreUnavailable(f"S3 delete of {e.name!r} version {e.version_id} on {self._where()} failed: "
                                       f"{e.code}: {e.message} ({len(errors)} object version(s) not deleted)")
            return sorted({o.object_name[n:] for o in found
                           if _is_latest(o) and not o.is_delete_marker})

        return self._call(f"delete prefix {prefix}", go)
