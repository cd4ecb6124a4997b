"""Relabel -> incremental retrain: only the affected shard, from that sample's slice, bit-exact."""

from __future__ import annotations

import numpy as np
import pytest

from shardwise.api import ShardedModel
from shardwise.errors import InvalidInput
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from tests.helpers import dataset, model
from tests.integration.test_forget_flow import published, tensors

pytestmark = pytest.mark.slow
NS = "default"


def test_a_label_fix_retrains_one_shard_from_its_slice_and_equals_training_from_scratch(local_store):
    store = local_store
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None)
    reg.apply(dataset())
    reg.apply(model("m"))
    runner.run(timeout=300)
    before = published(store, reg.require(ShardedModel, "m"))

    v = runner.view("digits")
    a = v.assignment(3, 3, 0, True)
    i = int(np.flatnonzero((a.shard == 1) & (a.slice == 1))[0])
    sample, old = str(v.table.ids[i]), v.table.class_names[int(v.state.labels[i])]
    new_label = "7" if old != "7" else "1"
    with pytest.raises(InvalidInput, match="not in Dataset"):
        runner.control.relabel("digits", {"no-such-id": "1"}, by="test")
    with pytest.raises(InvalidInput, match="--label: 'cat' is not a class"):
        runner.control.relabel("digits", {sample: "cat"}, by="test")
    assert runner.control.datasets.current_revision("digits") == 1  # nothing written by the refusals

    rev = runner.control.relabel("digits", {sample: new_label}, by="alice")
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    after = published(store, m)
    doc = store.get_json(f"{NS}/models/m/{m.metadata.uid}/versions/{after.version:06d}.json")
    assert [(j["shard"], j["fromSlice"]) for j in doc["jobs"]] == [(1, 1)]  # one shard, from the sample's slice
    assert after.chains[0] == before.chains[0] and after.chains[2] == before.chains[2]
    change = store.get_json(f"{NS}/datasets/digits/{rev:06d}/manifest.json")["change"]
    assert change["by"] == "alice" and change["labels"] == [{"id": sample, "from": old, "to": new_label}]

    reg.apply(model("scratch"))  # trained from scratch on the corrected labels
    runner.run(timeout=300)
    ref = published(store, reg.require(ShardedModel, "scratch"))
    for k in range(3):
        x, y = tensors(store, after.chains[k][-1]), tensors(store, ref.chains[k][-1])
        assert all(torch_equal(x[n], y[n]) for n in x), f"shard {k} differs"


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
