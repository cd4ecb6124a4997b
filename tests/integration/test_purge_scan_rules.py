"""The scan's judgements, fast: a stored Dataset and hand-written checkpoint records, no training.

Runs on both stores (a folder and an unversioned S3 bucket on SeaweedFS). The
end-to-end proof with real training is in test_purge_scan.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from shardwise.api import ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput
from shardwise.purge_scan import classify, load_models, payload_leaks, scan_for_forgotten
from shardwise.store.layout import Layout
from tests.helpers import dataset, model

NS = "t"
L = Layout(NS)
UID = "u1"


def _model() -> ShardedModel:
    m = model("m", shards=2, slices=2)
    m.metadata.uid = UID
    return m


def _table(n: int = 40) -> SampleTable:
    rng = np.random.default_rng(0)
    return SampleTable(
        ids=np.array([f"s{i:03d}" for i in range(n)]), labels=(np.arange(n) % 3).astype(np.int64),
        features=rng.random((n, 4), dtype=np.float32) + 0.1, owners=np.array([f"o{i % 10}" for i in range(n)]),
        class_names=("a", "b", "c"))


def _checkpoint(store, shard: int, slc: int, rev: int, revisions: tuple[int, ...]) -> CheckpointRef:
    key = L.checkpoint("m", UID, shard, slc, rev)
    sha = store.put_verified(key, f"weights {shard} {slc} {rev}".encode())
    ref = CheckpointRef(shard, slc, key, sha, "w", ("fp",) * (slc + 1), revisions)
    store.put_json(L.checkpoint_meta(key), ref.to_dict())
    return ref


@pytest.fixture
def trained(any_store):
    """Dataset revision 1 and a 2x2 model trained on it (published as version 1)."""
    ds = DatasetStore(any_store, L)
    ds.ingest("digits", dataset().spec, _table())
    chains = tuple(tuple(_checkpoint(any_store, k, r, 1, (1,) * (r + 1)) for r in range(2)) for k in range(2))
    any_store.put_json(L.version("m", UID, 1), VersionManifest(1, 1, chains).to_dict())
    return any_store, ds, chains


def _forget_one(ds: DatasetStore, shard: int, slc: int) -> str:
    """Tombstone one training sample of (shard, slice) in revision 2, scrub the payload; its id."""
    v = ds.view("digits")
    a = v.assignment(2, 2, 0, True)
    i = int(np.flatnonzero((a.shard == shard) & (a.slice == slc))[0])
    # owner grouping puts all of an owner's samples together: forget them all, as a ForgetRequest by owner would
    idx = np.flatnonzero(v.table.owners == v.table.owners[i])
    ds.write_revision("digits", v.state.forget(idx), {"kind": "forget"})
    ds.scrub("digits")
    return str(v.table.ids[i])


def test_what_holds_a_forgotten_sample_is_found_and_nothing_else(trained):
    store, ds, chains = trained
    assert scan_for_forgotten(store, NS, [_model()]).clean  # nothing forgotten yet
    _forget_one(ds, 0, 1)
    report = scan_for_forgotten(store, NS, [_model()])
    held = chains[0][1].key
    assert {(f.key, f.kind) for f in report.findings} == {
        (held, "checkpoint"), (L.checkpoint_meta(held), "meta"), (L.version("m", UID, 1), "version")}
    assert report.forgotten == {"digits": 4} and report.unchecked == []
    # the purge and retrain: shard 0 slice 1 again at revision 2, its slice 0 kept
    store.delete(L.version("m", UID, 1))
    store.delete(held)
    store.delete(L.checkpoint_meta(held))
    new = _checkpoint(store, 0, 1, 2, (1, 2))
    store.put_json(L.version("m", UID, 2), VersionManifest(2, 2, ((chains[0][0], new), chains[1])).to_dict())
    assert scan_for_forgotten(store, NS, [_model()]).findings == []


def test_a_lineage_that_lies_is_caught(trained):
    store, ds, chains = trained
    _forget_one(ds, 0, 0)
    for r in range(2):  # what a faulty trainer might write: a key at revision 2, slices read at 1
        store.delete(chains[0][r].key)
        store.delete(L.checkpoint_meta(chains[0][r].key))
    store.delete(L.version("m", UID, 1))
    _checkpoint(store, 0, 0, 2, (2,))
    liar = _checkpoint(store, 0, 1, 2, (1, 2))  # claims slice 0 was read at revision 1, before the forget
    found = {(f.key, f.kind) for f in scan_for_forgotten(store, NS, [_model()]).findings}
    assert found == {(liar.key, "checkpoint"), (L.checkpoint_meta(liar.key), "meta")}


def test_a_lineage_that_does_not_fit_its_key_counts_as_the_worst(trained):
    store, ds, chains = trained
    _forget_one(ds, 0, 0)
    for r in range(2):
        store.delete(chains[0][r].key)
        store.delete(L.checkpoint_meta(chains[0][r].key))
    store.delete(L.version("m", UID, 1))
    odd = _checkpoint(store, 0, 0, 2, (2, 2))  # two revisions for one slice
    found = {(f.key, f.kind) for f in scan_for_forgotten(store, NS, [_model()]).findings}
    assert found == {(odd.key, "checkpoint"), (L.checkpoint_meta(odd.key), "meta")}


def test_the_spec_is_learnt_from_a_job_request_left_in_the_store(trained):
    store, ds, chains = trained
    _forget_one(ds, 1, 1)
    assert any("no ShardedModel spec" in f.reason for f in scan_for_forgotten(store, NS, []).findings)
    store.put_json(L.job_request("m", UID, "m-s0-r1-f0"), {"spec": _model().spec.model_dump(mode="json"),
                                                           "keep": [], "parent": None})
    report = scan_for_forgotten(store, NS, [])
    assert {f.key for f in report.findings} == {chains[1][1].key, L.checkpoint_meta(chains[1][1].key),
                                                L.version("m", UID, 1)}


def test_an_unscrubbed_payload_is_found_and_unknown_objects_are_listed(trained):
    store, ds, _ = trained
    v = ds.view("digits")
    forgotten = _forget_one(ds, 1, 0)
    store.put_verified(v.payload_key, v.table.to_npz())  # the pre-scrub payload, back again
    store.put_bytes(f"{NS}/stray/thing.bin", b"?")
    report = scan_for_forgotten(store, NS, [_model()])
    pay = [f for f in report.findings if f.kind == "payload"]
    assert len(pay) == 1 and pay[0].key == v.payload_key and forgotten in pay[0].reason
    assert report.unchecked == [f"{NS}/stray/thing.bin"]


def test_payload_leaks_looks_at_features_and_owner_keys():
    t = _table(4)
    feats = t.features.copy()
    feats[[0, 1]] = 0
    owners = t.owners.copy().astype(object)
    owners[0] = "sha256:abc"
    scrubbed = SampleTable(t.ids, t.labels, feats, owners.astype(str), t.class_names)
    # s000 is scrubbed; s001 has zero features but a clear owner; s002 still has features
    assert payload_leaks(scrubbed, np.array(["s000", "s001", "s002"])).tolist() == ["s001", "s002"]


@pytest.mark.parametrize("rel, kind", [
    ("models/m/u/shard-0/slice-1/r000002/checkpoint", "checkpoint"),
    ("models/m/u/shard-0/slice-1/r000002/meta.json", "meta"),
    ("models/m/u/versions/000003.json", "version"),
    ("models/m/u/jobs/m-s0-r2-f1/status.json", "job"),
    ("models/m/u/evals/000003.request.json", "eval"),
    ("datasets/d/payload/abc123.npz", "payload"),
    ("datasets/d/000002/state.npz", "record"),
    ("experiments/x/predictions.npz", "predictions"),
    ("models/m/u/shard-0/slice-1/r000002/checkpoint.bak", None),
])
def test_classify(rel, kind):
    c = classify(rel)
    assert (c[0] if c else None) == kind


def test_load_models_reads_a_kubectl_list_and_needs_uids(tmp_path):
    doc = _model().to_doc()
    (tmp_path / "list.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [doc]}))
    (m,) = load_models([str(tmp_path / "list.yaml")])
    assert (m.name, m.metadata.uid) == ("m", UID)
    doc["metadata"].pop("uid")
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidInput, match="one.yaml item 1: ShardedModel m has no metadata.uid"):
        load_models([str(tmp_path / "one.yaml")])
