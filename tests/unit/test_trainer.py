"""The trainer in-process (real torch on CPU): determinism, resume equality, both nets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from shardwise.api.dataset import DatasetSpec
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from shardwise_trainer.train import predict_proba, train_shard

NS = "default"


def make_store(tmp_path, images: bool = False, n: int = 120) -> LocalStore:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 1, 8, 8) if images else (n, 6)).astype(np.float32)
         + y.reshape(-1, *([1] * (3 if images else 1))))
    table = SampleTable(np.array([f"s{i}" for i in range(n)]), y.astype(np.int64), x,
                        np.array([""] * n), ("a", "b", "c"))
    store = LocalStore(tmp_path / "store")
    DatasetStore(store, Layout(NS)).ingest("d", DatasetSpec(source={"builtin": "digits"}, testFraction=0.0), table)
    return store


def request(shard=0, start=0, keep=(), kind="mlp", rev=1, uid="u1"):
    return {"job": f"j{shard}{start}{rev}", "namespace": NS, "model": "m", "uid": uid, "dataset": "d",
            "shard": shard, "fromSlice": start, "revision": rev, "keep": [k.to_dict() for k in keep],
            "spec": {"datasetRef": "d", "shards": 2, "slices": 3, "architecture": {"kind": kind, "hiddenUnits": [8]},
                     "training": {"epochsPerSlice": 2, "batchSize": 16}}}


def test_training_is_deterministic_and_resuming_equals_training_straight_through(tmp_path):
    store = make_store(tmp_path)
    full, _ = train_shard(store, request(uid="a"))
    again, _ = train_shard(store, request(uid="b"))
    assert [r.weights_sha256 for r in full] == [r.weights_sha256 for r in again]
    # resume after slice 0 from the stored checkpoint: same weights at every later slice
    resumed, _ = train_shard(store, request(start=1, keep=full[:1], uid="c"))
    assert [r.weights_sha256 for r in resumed] == [r.weights_sha256 for r in full[1:]]
    a = torch.load(io.BytesIO(store.get_verified(full[-1].key)), weights_only=True)
    b = torch.load(io.BytesIO(store.get_verified(resumed[-1].key)), weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    # lineage recorded: fingerprints of slices 0..r and the revision of each
    assert [len(r.fingerprints) for r in full] == [1, 2, 3] and full[-1].revisions == (1, 1, 1)


def test_shards_differ_and_the_cnn_trains_on_images(tmp_path):
    store = make_store(tmp_path, images=True)
    s0, _ = train_shard(store, request(shard=0, kind="cnn"))
    s1, _ = train_shard(store, request(shard=1, kind="cnn"))
    assert s0[-1].weights_sha256 != s1[-1].weights_sha256
    view = DatasetStore(store, Layout(NS)).view("d")
    from shardwise.api.model import ShardedModelSpec
    spec = ShardedModelSpec.model_validate(request(kind="cnn")["spec"])
    probs = predict_proba(store, spec, [s0[-1], s1[-1]], view.table.features, 3)
    assert probs.shape == (2, len(view.table), 3) and np.allclose(probs.sum(axis=2), 1, atol=1e-5)
    assert (probs.mean(0).argmax(1) == view.table.labels).mean() > 0.5


def test_bad_requests_are_configuration_errors(tmp_path):
    store = make_store(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        train_shard(store, request(shard=5))
    with pytest.raises(ValueError, match="keeps 0 checkpoints but starts at slice 1"):
        train_shard(store, request(start=1))
    with pytest.raises(ValueError, match="cnn"):
        train_shard(store, request(kind="cnn"))
