"""The scan's judgements, fast: a stored Dataset and hand-written checkpoint records, no training.

Runs on both stores (a folder and an unversioned S3 bucket on SeaweedFS). The
end-to-end proof with real training is in test_purge_scan.py.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml

from shardwise.api import ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput
from shardwise.purge_scan import classify, load_models, scan_for_forgotten, strings_of
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
    """Forget the owner of one training sample of (shard, slice) in revision 2; that sample's id."""
    v = ds.view("digits")
    a = v.assignment(2, 2, 0, True)
    i = int(np.flatnonzero((a.shard == shard) & (a.slice == slc))[0])
    # owner grouping puts all of an owner's samples together: forget them all, as a ForgetRequest by owner would
    idx = np.flatnonzero(v.table.owners == v.table.owners[i])
    ds.forget("digits", idx, {"kind": "forget"})
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


def test_an_old_payload_put_back_is_found_by_the_ids_it_names_and_unknown_objects_are_listed(trained):
    store, ds, _ = trained
    old_key = ds.view("digits").payload_key
    old = store.get_bytes(old_key)
    forgotten = _forget_one(ds, 1, 0)
    assert not store.exists(old_key)  # the forget wrote a payload without the rows and deleted this one
    store.put_bytes(old_key, old)  # the payload as it was before the forget, back again
    store.put_bytes(f"{NS}/stray/thing.bin", b"?")
    report = scan_for_forgotten(store, NS, [_model()])
    pay = [f for f in report.findings if f.kind == "payload"]
    assert len(pay) == 1 and pay[0].key == old_key and forgotten in pay[0].reason
    assert "owner key of 1 forgotten owner(s)" in pay[0].reason
    assert report.unchecked == [f"{NS}/stray/thing.bin"]


def test_a_forgotten_id_or_owner_key_in_plain_text_is_found_in_any_object(trained):
    store, ds, _ = trained
    owner = ds.view("digits").table.owners[0]
    sid = str(ds.view("digits").table.ids[0])
    ds.forget("digits", np.flatnonzero(ds.view("digits").table.owners == owner), {"kind": "forget"})
    store.delete_prefix(f"{NS}/models/")  # the hand-made checkpoints held it (no purge here): names only
    assert scan_for_forgotten(store, NS, [_model()]).clean  # the forget itself left nothing readable
    planted = {
        f"{NS}/experiments/x/report.json": json.dumps({"hardest": [{"id": sid, "label": "b"}]}).encode(),
        f"{NS}/stray/notes.txt": f"relabelled '{sid}' to b".encode(),  # inside a sentence, in quotes
        f"{NS}/stray/owners.json": json.dumps({owner: 1}).encode(),  # a key, not a value
        f"{NS}/stray/rows.npz": _npz(ids=np.array(["other", sid])),
    }
    for key, data in planted.items():
        store.put_bytes(key, data)
    try:
        found = {f.key: f.reason for f in scan_for_forgotten(store, NS, [_model()]).findings}
        assert set(found) == set(planted)
        assert sid in found[f"{NS}/stray/notes.txt"] and "owner key" in found[f"{NS}/stray/owners.json"]
    finally:
        for key in planted:
            store.delete(key)
    # negative control: the same kind of object naming samples that were not forgotten passes
    store.put_bytes(f"{NS}/stray/notes.txt", b"relabelled 's039' to b and 'o9' too")
    assert not scan_for_forgotten(store, NS, [_model()]).findings


def test_a_forget_request_object_is_listed_as_retained_not_as_a_finding(trained):
    store, ds, _ = trained
    sid = _forget_one(ds, 0, 0)
    key = L.resource("forgetrequests", "f1")
    store.put_json(key, {"spec": {"datasetRef": "digits", "sampleIds": [sid]}})
    report = scan_for_forgotten(store, NS, [_model()])
    assert report.retained == [key] and all(f.key != key for f in report.findings)


def test_strings_of_reads_json_npz_and_text():
    assert {"a", "b", "c", "1"} <= set(strings_of(json.dumps({"a": ["b", {"c": 1}]}).encode(), "x.json"))
    assert {"p", "q"} <= set(strings_of(_npz(ids=np.array(["p", "q"])), "x.npz"))
    assert {"hello", "world"} <= set(strings_of(b"hello, 'world'", "x.txt"))


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


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
