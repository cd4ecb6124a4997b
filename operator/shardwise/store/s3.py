"""S3Store: the store on S3-compatible object storage through the minio SDK.

A PUT is atomic in S3 (an object becomes visible whole or not at all), so no
temp-and-rename is needed. The sha256 travels as user metadata. Connection
errors are retried with exponential backoff, so a restarting server does not
fail a run.
"""

from __future__ import annotations

import io
import time
from typing import Callable, TypeVar

import urllib3
from minio import Minio
from minio.error import S3Error

from shardwise.errors import NotFound, StoreUnavailable
from shardwise.store.base import Store, check_key

T = TypeVar("T")
META = "sha256"
AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Store(Store):
    def __init__(self, client: Minio, bucket: str, prefix: str = "", *, attempts: int = 6, backoff: float = 0.25):
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.attempts, self.backoff = attempts, backoff
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._endpoint = getattr(client, "_base_url", None)

    # -- plumbing ---------------------------------------------------------------
    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except S3Error as e:
                if e.code in AUTH_CODES:
                    raise StoreUnavailable(f"S3 refused {what} on bucket {self.bucket!r}: {e.code} (check credentials)") from None
                raise
            except (urllib3.exceptions.HTTPError, ConnectionError, OSError) as e:
                if attempt == self.attempts:
                    raise StoreUnavailable(
                        f"S3 endpoint for bucket {self.bucket!r} unreachable during {what} "
                        f"after {attempt} attempts: {type(e).__name__}"
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
                    if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        self._call("bucket check", go)

    # -- Store -------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, sha256: str | None = None) -> None:
        meta = {META: sha256} if sha256 else None
        k = self._k(key)
        self._call(f"put {key}", lambda: self.client.put_object(self.bucket, k, io.BytesIO(data), len(data), metadata=meta))

    def get_bytes(self, key: str) -> bytes:
        k = self._k(key)

        def go() -> bytes:
            try:
                resp = self.client.get_object(self.bucket, k)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    raise NotFound(f"no object {key!r} in {self.uri}") from None
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(f"get {key}", go)

    def stored_sha256(self, key: str) -> str | None:
        k = self._k(key)

        def go() -> str | None:
            try:
                st = self.client.stat_object(self.bucket, k)
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise
            meta = {m.lower(): v for m, v in (st.metadata or {}).items()}
            return meta.get(f"x-amz-meta-{META}")

        return self._call(f"stat {key}", go)

    def exists(self, key: str) -> bool:
        k = self._k(key)

        def go() -> bool:
            try:
                self.client.stat_object(self.bucket, k)
                return True
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return False
                raise

        return self._call(f"stat {key}", go)

    def list(self, prefix: str = "") -> list[str]:
        full = self.prefix + prefix
        n = len(self.prefix)
        return self._call(
            f"list {prefix}",
            lambda: sorted(o.object_name[n:] for o in self.client.list_objects(self.bucket, full, recursive=True)
                           if not o.is_dir),
        )

    def delete(self, key: str) -> None:
        k = self._k(key)
        self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, k))
