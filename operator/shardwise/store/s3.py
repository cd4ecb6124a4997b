"""S3Store: the store on S3-compatible object storage through the minio SDK.

A PUT is atomic in S3 (an object becomes visible whole or not at all), so no
temp-and-rename is needed. The sha256 travels as user metadata. Connection
errors and transient server errors are retried with exponential backoff, so a
restarting server does not fail a run.
"""

from __future__ import annotations

import io
import time
from typing import Callable, TypeVar

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from shardwise.errors import NotFound, StoreUnavailable
from shardwise.store.base import Store, check_key, check_prefix

T = TypeVar("T")
META = "sha256"  # sent as x-amz-meta-sha256
MISSING_CODES = {"NoSuchKey", "NoSuchObject", "NotFound"}
AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
# Codes a restarting or overloaded server answers with: worth another attempt.
TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed"}


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
                    raise StoreUnavailable(f"S3 refused {what} on {self._where()}: {e.code} (check credentials)") from None
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

    # -- Store -------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        # Without sha256 the put also drops metadata an older version of the object had.
        meta = {META: sha256} if sha256 else None
        k = self._k(key)
        self._call(f"put {key}", lambda: self.client.put_object(self.bucket, k, io.BytesIO(data), len(data), metadata=meta))

    def get_bytes(self, key: str) -> bytes:
        k = self._k(key)

        def go() -> bytes:
            try:
                resp = self.client.get_object(self.bucket, k)
            except S3Error as e:
                if e.code in MISSING_CODES:
                    raise NotFound(f"no object {key!r} in {self.uri}") from None
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

    def delete(self, key: str) -> None:
        k = self._k(key)
        # S3 DELETE of an absent key succeeds, so this is idempotent as it stands.
        self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, k))
