"""The certificate ledger's hash chain, API validation and the local registry."""

from __future__ import annotations

import copy
from datetime import UTC

import pytest
from pydantic import ValidationError

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.brain.ensemble import aggregate
from shardwise.brain.forget import chain_entry, verify_chain
from shardwise.errors import InvalidInput
from shardwise.local.manifests import parse_doc
from shardwise.local.registry import Registry
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from tests.helpers import model


def ledger(n=3):
    out, prev = [], "0" * 64
    for i in range(1, n + 1):
        e = chain_entry(i, prev, {"request": f"r{i}", "samplesForgotten": i})
        out.append(e)
        prev = e["hash"]
    return out


def test_an_intact_ledger_verifies_and_any_tampering_is_found():
    good = ledger()
    assert verify_chain(good) == []
    edited = copy.deepcopy(good)
    edited[1]["certificate"]["samplesForgotten"] = 99
    assert any("entry 2" in p and "tampered" in p for p in verify_chain(edited))
    assert verify_chain([good[0], good[2]])  # a removed entry breaks the chain
    rehashed = copy.deepcopy(good)
    rehashed[0] = chain_entry(1, "0" * 64, {"request": "other"})
    assert any("entry 2" in p and "prevHash" in p for p in verify_chain(rehashed))


@pytest.mark.parametrize("bad,field", [
    ({"shards": 0}, "shards"),
    ({"slices": 2000}, "slices"),
    ({"datasetRef": "Bad_Name"}, "datasetRef"),
    ({"aggregation": "max"}, "aggregation"),
    ({"training": {"learningRate": 0}}, "learningRate"),
    ({"architecture": {"hiddenUnits": [0]}}, "hiddenUnits"),
    ({"unknownField": 1}, "unknownField"),
])
def test_bad_model_specs_name_the_field(bad, field):
    doc = model().to_doc()
    doc["spec"] |= bad
    with pytest.raises(InvalidInput, match=field):
        parse_doc(doc, "m.yaml document 1")


def test_forget_request_needs_exactly_one_selector():
    base = {"kind": "ForgetRequest", "metadata": {"name": "f"}, "spec": {"datasetRef": "d"}}
    with pytest.raises(ValidationError, match="exactly one"):
        ForgetRequest.model_validate(base)
    with pytest.raises(ValidationError, match="exactly one"):
        ForgetRequest.model_validate({**base, "spec": {"datasetRef": "d", "ownerKey": "o", "sampleIds": ["a"]}})
    with pytest.raises(ValidationError):
        ForgetRequest.model_validate({**base, "metadata": {"name": "../etc"},
                                      "spec": {"datasetRef": "d", "ownerKey": "o"}})


def test_layout_refuses_names_that_could_escape_the_namespace():
    with pytest.raises(InvalidInput):
        Layout("../other")
    with pytest.raises(InvalidInput):
        Layout("ns").model("a/b", "u")


def test_registry_sets_metadata_counts_generations_and_guards_immutable_fields(tmp_path):
    reg = Registry(LocalStore(tmp_path), "default")
    m = model("m")
    assert reg.apply(m) == "created"
    stored = reg.require(ShardedModel, "m")
    assert stored.metadata.uid and stored.metadata.generation == 1 and stored.metadata.creationTimestamp
    assert reg.apply(m) == "unchanged"
    assert reg.apply(model("m", maxParallelShards=1)) == "configured"
    assert reg.require(ShardedModel, "m").metadata.generation == 2
    assert reg.require(ShardedModel, "m").metadata.uid == stored.metadata.uid
    with pytest.raises(InvalidInput, match="spec.shards is immutable"):
        reg.apply(model("m", shards=5))
    with pytest.raises(InvalidInput, match="spec.training is immutable"):
        reg.apply(model("m", epochs=5, maxParallelShards=1))
    assert reg.get(Dataset, "nope") is None


def test_vote_and_softmax_mean_aggregation():
    import numpy as np
    p = np.array([[[0.6, 0.4]], [[0.6, 0.4]], [[0.0, 1.0]]])
    assert aggregate(p, "vote").argmax(1).tolist() == [0]  # two of three vote for class 0
    assert aggregate(p, "softmax-mean").argmax(1).tolist() == [1]  # mean 0.4 vs 0.6


def test_deadline_time_left_and_risk():
    from datetime import datetime

    from shardwise.brain.forget import deadline_state

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert deadline_state("2026-01-31T00:00:00Z", now, 30) == ("30d0h", None)
    assert deadline_state("2026-01-08T12:00:00Z", now, 30) == ("7d12h", None)
    assert deadline_state("2026-01-05T00:00:00Z", now, 30) == ("4d0h", "DeadlineAtRisk")  # under a fifth left
    assert deadline_state("2026-01-01T05:30:00Z", now, 30) == ("5h30m", "DeadlineAtRisk")
    assert deadline_state("2025-12-31T00:00:00Z", now, 30) == ("0s", "DeadlineMissed")
