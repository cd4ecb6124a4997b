"""The store: one interface, a folder or S3-compatible object storage."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import urllib3
from minio import Minio

from shardwise.errors import StoreUnavailable
from shardwise.store.base import Store
from shardwise.store.local import LocalStore, StoreMissing
from shardwise.store.s3 import S3Store

__all__ = ["Store", "LocalStore", "S3Store", "StoreMissing", "open_store", "s3_client"]


def _env(*names: str) -> str:
    """The first of names that is set; the error names them all (the first is the usual one)."""
    for n in names:
        if os.environ.get(n):
            return os.environ[n]
    alt = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    raise StoreUnavailable(f"an s3:// store needs {names[0]}{alt} set in the environment")


def _http_client() -> urllib3.PoolManager:
    """minio's usual pool, but with urllib3's own retries off: S3Store's backoff is the one retry
    layer (8 tries over ~30 s by default, SHARDWISE_S3_ATTEMPTS), and it reports each retry."""
    import certifi

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=120), maxsize=10, retries=False,
        cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def s3_attempts() -> int:
    return int(os.environ.get("SHARDWISE_S3_ATTEMPTS", "8"))


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str | None = None) -> Minio:
    """The one way a Minio client is made: `endpoint` as http(s)://host:port or host:port (plain http, as
    in-cluster and dev servers have it), with the pool above."""
    return Minio(endpoint.split("://", 1)[-1].rstrip("/"), access_key=access_key, secret_key=secret_key,
                 secure=endpoint.startswith("https://"), region=region, http_client=_http_client())


def open_store(uri: str | Path, *, create: bool = True) -> Store:
    """A folder path or file:// URI, or s3://bucket/prefix (endpoint and credentials from env).

    create: make the folder or bucket when it is missing (what a writer wants); False raises
    StoreMissing instead, so that a command that only reads leaves no store behind a typo.
    """
    text = str(uri)
    if not text.startswith("s3://"):
        return LocalStore(text[len("file://"):] if text.startswith("file://") else text, create=create)
    u = urlparse(text)
    if not u.netloc:
        raise StoreUnavailable(f"store {text!r}: an s3:// URI needs a bucket, as in s3://bucket/prefix")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", u.netloc):
        raise StoreUnavailable(f"store {text!r}: {u.netloc!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
    client = s3_client(_env("SHARDWISE_S3_ENDPOINT"), _env("AWS_ACCESS_KEY_ID", "SHARDWISE_S3_ACCESS_KEY"),
                       _env("AWS_SECRET_ACCESS_KEY", "SHARDWISE_S3_SECRET_KEY"),
                       os.environ.get("SHARDWISE_S3_REGION") or None)
    store = S3Store(client, u.netloc, u.path, attempts=s3_attempts())
    if create:
        store.ensure_bucket()
        return store
    if not store._call("bucket check", lambda: client.bucket_exists(u.netloc)):
        raise StoreMissing(f"S3 bucket {u.netloc!r} at {store.endpoint} does not exist")
    store.check_bucket()  # what ensure_bucket checks after the create
    return store
