"""Dataset sources read from a real S3 server (SeaweedFS), as `uri: s3://...`."""

from shardwise.api.dataset import DatasetSource
from shardwise.data.sources import load_source


def test_csv_and_jsonl_from_s3(seaweedfs, s3_store, monkeypatch):
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    s3_store.put_bytes("data/train.csv", b"id,label,owner,a,b\nx1,cat,p1,0.5,1\nx2,dog,,2,3\n")
    s3_store.put_bytes("data/train.jsonl", b'{"id": "j1", "label": 1, "features": [1, 2]}\n')
    t = load_source(DatasetSource(uri=f"s3://{s3_store.bucket}/root/data/train.csv"))
    assert t.ids.tolist() == ["x1", "x2"] and t.class_names == ("cat", "dog") and t.owners.tolist() == ["p1", ""]
    assert t.features.tolist() == [[0.5, 1.0], [2.0, 3.0]]
    j = load_source(DatasetSource(uri=f"s3://{s3_store.bucket}/root/data/train.jsonl"))
    assert j.ids.tolist() == ["j1"] and j.features.shape == (1, 2)
