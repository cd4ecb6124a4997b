"""S3Store against bucket versioning and object lock, on a real S3 server (SeaweedFS).

A purge must leave no old version of anything behind, and no checkpoint may be
written where a lock would keep it: a default retention is refused on open, and
the store never sets a retention or a legal hold itself.
"""

from __future__ import annotations

import io
import uuid

import pytest
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, YEARS, ObjectLockConfig
from minio.versioningconfig import ENABLED, SUSPENDED, VersioningConfig

from shardwise.errors import NotFound, StoreUnavailable
from shardwise.store import open_store
from shardwise.store.s3 import S3Store, retention_blocks_purge


def _bucket(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _raw_put(store: S3Store, key: str, data: bytes) -> str:
    """A put straight through the SDK (what another writer, or an older shardwise, leaves)."""
    return store.client.put_object(store.bucket, store.prefix + key, io.BytesIO(data), len(data)).version_id


def _versions(store: S3Store, prefix: str = "") -> list[tuple[str, bool]]:
    return [(v.key, v.is_delete_marker) for v in store.list_versions(prefix)]


@pytest.fixture
def versioned(seaweedfs) -> S3Store:
    client = seaweedfs.client()
    bucket = _bucket("v")
    client.make_bucket(bucket)
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    store = S3Store(client, bucket, "root")
    store.ensure_bucket()
    return store


# -- versioning -----------------------------------------------------------------------------
def test_delete_removes_every_version_and_delete_marker(versioned):
    for i in range(3):
        _raw_put(versioned, "m/shard-0/checkpoint", b"v%d" % i)
    _raw_put(versioned, "m/shard-0/checkpoint-other", b"sibling")  # same prefix, another key
    versioned.client.remove_object(versioned.bucket, "root/m/shard-0/checkpoint")  # a plain DELETE: a marker
    assert _versions(versioned, "m/shard-0/checkpoint").count(("m/shard-0/checkpoint", False)) == 3
    versioned.delete("m/shard-0/checkpoint")
    assert _versions(versioned, "m/") == [("m/shard-0/checkpoint-other", False)]
    versioned.delete("m/shard-0/checkpoint")  # idempotent
    assert versioned.get_bytes("m/shard-0/checkpoint-other") == b"sibling"


def test_delete_prefix_removes_every_version_under_it(versioned):
    for key in ("j/a/request.json", "j/a/status.json", "j/b/status.json"):
        for i in range(2):
            _raw_put(versioned, key, b"%d" % i)
    versioned.client.remove_object(versioned.bucket, "root/j/b/status.json")  # only old versions left there
    _raw_put(versioned, "k/keep", b"x")
    assert versioned.delete_prefix("j/") == ["j/a/request.json", "j/a/status.json"]  # the keys that were live
    assert _versions(versioned) == [("k/keep", False)]


def test_a_put_removes_the_versions_it_replaces(versioned):
    old = _raw_put(versioned, "d/payload.json", b"old")
    versioned.put_json("d/payload.json", {"new": 1})
    (v,) = versioned.list_versions("d/")
    assert v.is_latest and v.version_id != old and versioned.get_json("d/payload.json") == {"new": 1}
    with pytest.raises(NotFound, match=f"version {old}"):
        versioned.get_bytes("d/payload.json", version_id=old)


def test_versions_from_before_a_suspension_are_deleted_too(seaweedfs):
    # Suspended versioning keeps the versions written while it was on; the "null" version is real too.
    client = seaweedfs.client()
    bucket = _bucket("s")
    client.make_bucket(bucket)
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    client.put_object(bucket, "k", io.BytesIO(b"enabled-era"), 11)
    client.set_bucket_versioning(bucket, VersioningConfig(SUSPENDED))
    client.put_object(bucket, "k", io.BytesIO(b"null"), 4)
    store = S3Store(client, bucket)
    store.ensure_bucket()
    assert store.check_bucket() is True  # treated as versioned
    assert len(store.list_versions("k")) == 2
    store.delete("k")
    # SeaweedFS may leave a bare "null" delete marker behind (no data); no version with data survives
    assert [v for v in store.list_versions("k") if not v.is_delete_marker] == []


def test_an_unversioned_bucket_keeps_working_with_one_version_per_key(s3_store):
    assert s3_store.check_bucket() is False
    s3_store.put_bytes("u/k", b"1")
    s3_store.put_bytes("u/k", b"2")
    assert [(v.key, v.version_id) for v in s3_store.list_versions("u/")] == [("u/k", "null")]
    s3_store.delete("u/k")
    assert s3_store.list_versions("u/") == []


# -- object lock ----------------------------------------------------------------------------
@pytest.mark.parametrize("config, text", [
    (ObjectLockConfig(GOVERNANCE, 30, DAYS), "(GOVERNANCE, 30 days)"),
    (ObjectLockConfig(COMPLIANCE, 1, YEARS), "(COMPLIANCE, 1 years)"),
])
def test_a_default_retention_is_named_as_the_reason(config, text):
    why = retention_blocks_purge("ckpts", config)
    assert why == (f"bucket 'ckpts' has a default retention {text}: checkpoints in it could not be purged on "
                   "forget; use a bucket without default retention")


@pytest.mark.parametrize("config", [None, ObjectLockConfig(None, None, None)])
def test_no_default_retention_is_fine(config):
    assert retention_blocks_purge("ckpts", config) is None


def test_a_bucket_with_default_retention_is_refused_before_any_write(seaweedfs, monkeypatch):
    client = seaweedfs.client()
    bucket = _bucket("l")
    client.make_bucket(bucket, object_lock=True)
    client.set_object_lock_config(bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS))
    msg = f"bucket '{bucket}' has a default retention \\(GOVERNANCE, 1 days\\): checkpoints in it could not be purged"
    with pytest.raises(StoreUnavailable, match=msg):
        S3Store(client, bucket).ensure_bucket()
    store = S3Store(client, bucket, attempts=1)  # built directly, as the kube body does
    with pytest.raises(StoreUnavailable, match=msg):
        store.put_verified("ns/models/m/u/shard-0/slice-0/r000001/checkpoint", b"weights")
    with pytest.raises(StoreUnavailable, match=msg):
        store.delete("anything")
    assert list(client.list_objects(bucket, recursive=True, include_version=True)) == []  # nothing written
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    with pytest.raises(StoreUnavailable, match=msg):
        open_store(f"s3://{bucket}/prefix")  # the CLI and the trainer open it this way


def test_objects_written_to_a_lock_enabled_bucket_carry_no_lock_and_are_purged(seaweedfs):
    # Object lock on, no default rule: allowed. Nothing shardwise writes is locked, so the purge works.
    client = seaweedfs.client()
    bucket = _bucket("n")
    client.make_bucket(bucket, object_lock=True)  # lock-enabled buckets are always versioned
    store = S3Store(client, bucket, "root")
    store.ensure_bucket()
    assert store.check_bucket() is True
    key = "ns/models/m/u/shard-0/slice-0/r000001/checkpoint"
    store.put_verified(key, b"weights-1")
    store.put_verified(key, b"weights-2")
    (v,) = store.list_versions(key)
    for probe, absent in ((client.get_object_retention, "ObjectLockConfigurationNotFoundError"),
                          (client.is_object_legal_hold_enabled, "NoSuchObjectLegalHold")):
        try:
            result = probe(bucket, "root/" + key, version_id=v.version_id)
        except S3Error as e:
            assert e.code == absent
        else:
            assert not result  # no retention, no legal hold
    # the probe can fail: an object put with a legal hold (never by shardwise) shows it
    held = client.put_object(bucket, "root/held", io.BytesIO(b"x"), 1, legal_hold=True).version_id
    assert client.is_object_legal_hold_enabled(bucket, "root/held", version_id=held)
    client.disable_object_legal_hold(bucket, "root/held", version_id=held)
    store.delete(key)
    store.delete("held")
    assert store.list_versions() == []


def test_a_legal_hold_set_outside_shardwise_makes_the_purge_fail_loudly(seaweedfs):
    client = seaweedfs.client()
    bucket = _bucket("h")
    client.make_bucket(bucket, object_lock=True)
    store = S3Store(client, bucket, "root", attempts=1)
    store.ensure_bucket()
    key = "ns/models/m/u/shard-0/slice-0/r000001/checkpoint"
    store.put_verified(key, b"weights")
    (v,) = store.list_versions(key)
    client.enable_object_legal_hold(bucket, "root/" + key, version_id=v.version_id)
    try:
        with pytest.raises(StoreUnavailable, match=f"refused to delete '{key}' version {v.version_id}.*legal hold"):
            store.delete(key)
        with pytest.raises(StoreUnavailable, match=f"refused to delete '{key}' version {v.version_id}"):
            store.delete_prefix("ns/")
    finally:
        client.disable_object_legal_hold(bucket, "root/" + key, version_id=v.version_id)
    store.delete(key)
    assert store.list_versions("ns/") == []
