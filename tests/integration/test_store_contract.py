"""One contract, two stores: LocalStore on a folder and S3Store on a real S3 server."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shardwise.errors import CorruptObject, InvalidInput, NotFound, StoreUnavailable
from shardwise.store import open_store
from shardwise.store.base import check_key, sha256_hex
from shardwise.store.local import LocalStore
from shardwise.store.s3 import S3Store


def test_round_trip_overwrite_and_missing(any_store):
    any_store.put_bytes("ns/a/one", b"1")
    assert any_store.get_bytes("ns/a/one") == b"1" and any_store.exists("ns/a/one")
    any_store.put_bytes("ns/a/one", b"2")
    assert any_store.get_bytes("ns/a/one") == b"2"
    with pytest.raises(NotFound, match="ns/a/missing"):
        any_store.get_bytes("ns/a/missing")
    assert not any_store.exists("ns/a/missing")
    assert any_store.stored_sha256("ns/a/missing") is None


def test_list_is_recursive_sorted_and_shows_only_objects(any_store):
    for k in ("ns/b/2", "ns/a/x/1", "ns/a/0", "other/z"):
        any_store.put_verified(k, k.encode())
    assert any_store.list("ns/") == ["ns/a/0", "ns/a/x/1", "ns/b/2"]
    assert any_store.list("ns/a") == ["ns/a/0", "ns/a/x/1"]
    assert any_store.list("nothing/") == []
    assert any_store.list() == ["ns/a/0", "ns/a/x/1", "ns/b/2", "other/z"]


@pytest.mark.parametrize("prefix", ["../", "/etc/", "a//", "a/../b"])
def test_list_refuses_prefixes_that_leave_the_root(any_store, prefix):
    with pytest.raises(InvalidInput):
        any_store.list(prefix)


def test_a_plain_put_drops_the_recorded_sha256(any_store):
    any_store.put_verified("v/k", b"verified")
    any_store.put_bytes("v/k", b"plain")
    assert any_store.stored_sha256("v/k") is None
    assert any_store.get_verified("v/k") == b"plain"


def test_delete_is_idempotent_and_delete_prefix(any_store):
    any_store.put_verified("p/1", b"1")
    any_store.put_bytes("p/q/2", b"2")
    any_store.delete("p/1")
    any_store.delete("p/1")
    assert not any_store.exists("p/1") and any_store.stored_sha256("p/1") is None
    assert any_store.delete_prefix("p/") == ["p/q/2"]
    assert any_store.list("p/") == []


def test_verified_objects_detect_corruption(any_store):
    data = os.urandom(5 * 1024 * 1024)  # 5 MB: multipart territory for S3
    digest = any_store.put_verified("ck/checkpoint", data)
    assert digest == sha256_hex(data) == any_store.stored_sha256("ck/checkpoint")
    assert any_store.get_verified("ck/checkpoint", digest) == data
    with pytest.raises(CorruptObject, match="ck/checkpoint"):
        any_store.get_verified("ck/checkpoint", "0" * 64)  # the manifest expects other bytes
    flipped = bytearray(data)
    flipped[12345] ^= 0x01  # one flipped byte, the recorded sha256 kept
    if isinstance(any_store, LocalStore):
        (any_store.root / "ck/checkpoint").write_bytes(bytes(flipped))
    else:
        any_store.client.put_object(any_store.bucket, any_store.prefix + "ck/checkpoint", io.BytesIO(bytes(flipped)),
                                    len(flipped), metadata={"sha256": digest})
    with pytest.raises(CorruptObject, match="ck/checkpoint.*corrupt"):
        any_store.get_verified("ck/checkpoint")


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "a/../b", "", "a/b/", "a\\b"])
def test_unclean_keys_are_refused(any_store, key):
    with pytest.raises(InvalidInput):
        any_store.put_bytes(key, b"x")


def test_json_helpers(any_store):
    any_store.put_json("j/doc.json", {"b": [1, 2], "a": "x"})
    assert any_store.get_json("j/doc.json") == {"a": "x", "b": [1, 2]}


@given(st.text(max_size=40))
def test_check_key_accepts_only_clean_relative_paths(key):
    try:
        ok = check_key(key)
    except InvalidInput:
        return
    parts = ok.split("/")
    assert not ok.startswith("/") and ".." not in parts and "." not in parts and "" not in parts


# -- LocalStore only -----------------------------------------------------------------
def test_a_crash_before_the_rename_leaves_nothing_visible(local_store, monkeypatch):
    local_store.put_verified("c/old", b"old")

    def crash(*a, **k):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        local_store.put_bytes("c/new", b"half")
    with pytest.raises(OSError):
        local_store.put_bytes("c/old", b"new content")
    monkeypatch.undo()
    assert not local_store.exists("c/new")
    assert local_store.get_bytes("c/old") == b"old"
    assert local_store.list("c/") == ["c/old"]
    assert not [p for p in (local_store.root / "c").iterdir() if p.name.startswith(".tmp-")]


def test_list_hides_sidecars_and_temp_files(local_store):
    local_store.put_verified("h/obj", b"x")
    (local_store.root / "h" / ".tmp-leftover").write_bytes(b"half")
    assert (local_store.root / "h" / "obj.sha256").is_file()
    assert local_store.list() == ["h/obj"]
    local_store.delete("h/obj")
    assert not (local_store.root / "h" / "obj.sha256").exists()
    with pytest.raises(InvalidInput, match="reserved"):
        local_store.put_bytes("h/x.sha256", b"")


def test_a_key_that_is_a_folder_of_another_is_refused(local_store):
    local_store.put_verified("f/a/b", b"1")
    with pytest.raises(InvalidInput, match="'f/a' collides"):
        local_store.put_verified("f/a", b"2")
    local_store.put_bytes("g/a", b"1")
    with pytest.raises(InvalidInput, match="'g/a/b' collides"):
        local_store.put_bytes("g/a/b", b"2")
    assert local_store.list() == ["f/a/b", "g/a"] and local_store.stored_sha256("f/a") is None
    assert not local_store.exists("g/a/b") and local_store.stored_sha256("g/a/b") is None
    local_store.delete("g/a/b")


def test_open_store_on_a_path(tmp_path):
    s = open_store(tmp_path / "x")
    assert isinstance(s, LocalStore) and s.uri == f"file://{tmp_path / 'x'}"
    assert isinstance(open_store(s.uri), LocalStore)


# -- S3 only ---------------------------------------------------------------------------
def test_wrong_credentials_are_refused(seaweedfs, s3_store):
    bad = S3Store(seaweedfs.client(secret_key="wrong"), s3_store.bucket, "root", attempts=1)
    with pytest.raises(StoreUnavailable, match=f"{s3_store.bucket}.*{seaweedfs.endpoint}.*check credentials"):
        bad.get_bytes("x")
    with pytest.raises(StoreUnavailable, match="check credentials"):
        bad.put_bytes("x", b"x")


def test_a_missing_bucket_is_a_store_error(seaweedfs):
    s = S3Store(seaweedfs.client(), "no-such-bucket-here", attempts=1)
    with pytest.raises(StoreUnavailable, match="'no-such-bucket-here'.*does not exist"):
        s.put_bytes("x", b"x")
    with pytest.raises(InvalidInput):
        S3Store(seaweedfs.client(), "b", "a/../b")


def test_open_store_from_the_environment(seaweedfs, monkeypatch):
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", f"http://{seaweedfs.endpoint}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    s = open_store("s3://envbucket/pre/fix")
    assert isinstance(s, S3Store) and s.uri == "s3://envbucket/pre/fix"
    s.put_json("k.json", [1])
    assert s.get_json("k.json") == [1]
    assert seaweedfs.client().stat_object("envbucket", "pre/fix/k.json").size > 0


def test_missing_configuration_names_the_variable(monkeypatch):
    for v in ("SHARDWISE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(StoreUnavailable, match="SHARDWISE_S3_ENDPOINT"):
        open_store("s3://bucket/p")
    with pytest.raises(StoreUnavailable, match="not a valid S3 bucket name"):
        open_store("s3://B_/p")
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", "127.0.0.1:9")
    with pytest.raises(StoreUnavailable, match="AWS_ACCESS_KEY_ID.*SHARDWISE_S3_ACCESS_KEY"):
        open_store("s3://bucket/p")
    monkeypatch.setenv("SHARDWISE_S3_ACCESS_KEY", "k")  # the alternative name is accepted
    with pytest.raises(StoreUnavailable, match="AWS_SECRET_ACCESS_KEY"):
        open_store("s3://bucket/p")


def test_open_store_accepts_the_shardwise_credential_names(seaweedfs, monkeypatch):
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)  # host:port alone: plain http
    monkeypatch.setenv("SHARDWISE_S3_ACCESS_KEY", seaweedfs.access_key)
    monkeypatch.setenv("SHARDWISE_S3_SECRET_KEY", seaweedfs.secret_key)
    s = open_store("s3://envbucket2")
    assert s.uri == "s3://envbucket2" and s.list() == []


def test_an_unreachable_server_is_a_clear_error_after_retries():
    import urllib3
    from minio import Minio

    no_retry = urllib3.PoolManager(retries=urllib3.Retry(total=0))  # our backoff, not urllib3's, is under test
    s = S3Store(Minio("127.0.0.1:9", "k", "s", secure=False, http_client=no_retry), "bucket", attempts=2, backoff=0.01)
    with pytest.raises(StoreUnavailable, match="unreachable.*after 2 attempts"):
        s.get_bytes("x")


def test_the_store_rides_out_a_server_restart(seaweedfs, s3_store):
    import urllib3

    # urllib3's retries off: the store's own backoff must bridge the outage
    store = S3Store(seaweedfs.client(http_client=urllib3.PoolManager(retries=False)), s3_store.bucket, "root",
                    attempts=8, backoff=0.2)
    store.put_verified("r/before", b"kept")
    seaweedfs.stop()
    with ThreadPoolExecutor(1) as pool:
        during = pool.submit(lambda: (store.get_verified("r/before"), store.put_verified("r/during", b"new")))
        time.sleep(1.0)
        assert not during.done()  # still retrying while the server is down
        seaweedfs.start()  # from this (main) thread: see SeaweedFS.start
        assert during.result(timeout=60)[0] == b"kept"
    assert store.get_verified("r/during") == b"new"
