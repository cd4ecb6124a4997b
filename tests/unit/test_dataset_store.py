"""DatasetStore: revisions over live rows, tombstones that say nothing readable, one state kept."""

from __future__ import annotations

import io

import numpy as np
import pytest

from shardwise.api.dataset import DatasetSpec
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore

L = Layout("t")
SPEC = DatasetSpec.model_validate({"source": {"builtin": "digits"}, "testFraction": 0.25})


def table(n: int = 30) -> SampleTable:
    return SampleTable(np.array([f"id-{i}" for i in range(n)]), (np.arange(n) % 3).astype(np.int64),
                       np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.array([f"o{i // 3}" for i in range(n)]),
                       ("a", "b", "c"))


@pytest.fixture
def ds(tmp_path) -> DatasetStore:
    d = DatasetStore(LocalStore(tmp_path), L)
    d.ingest("d", SPEC, table())
    return d


def test_a_forget_keeps_one_payload_and_one_state_and_the_tombstones_are_sealed(ds):
    before = ds.view("d")
    rows = np.flatnonzero(before.table.owners == "o2")  # the owner's last samples: its key is tagged too
    ds.forget("d", rows, {"kind": "forget"})
    keys = ds.store.list(L.dataset("d") + "/")
    assert len([k for k in keys if "/payload/" in k]) == 1 and len([k for k in keys if k.endswith("state.npz")]) == 1
    v = ds.view("d")
    assert v.state.revision == 2 and len(v.table) == 27 and not set(before.table.ids[rows]) & set(v.table.ids)
    key = ds.key("d")
    assert set(v.forgotten.id_tag.tolist()) == {key.tag("id", f"id-{i}") for i in (6, 7, 8)}
    assert set(v.forgotten.owner_tag.tolist()) == {key.tag("owner", "o2")}
    # in memory the words are the samples' own (their placement), in the store they are not
    assert sorted(v.forgotten.id_word.tolist()) == sorted(before.id_words[rows].tolist())
    cur = ds.store.get_json(L.dataset_current("d"))
    raw = np.load(io.BytesIO(ds.store.get_bytes(cur["state"]["key"])))
    assert not set(raw["t_id_word"].tolist()) & set(before.id_words[rows].tolist())
    # revision 1 read now: the same rows less the forgotten ones
    assert ds.view("d", 1).table.ids.tolist() == v.table.ids.tolist()


def test_an_owner_key_in_use_is_not_tagged_until_its_last_sample_goes(ds):
    ds.forget("d", np.array([9]), {"kind": "forget"})  # id-9 of o3, which keeps id-10 and id-11
    v = ds.view("d")
    assert v.forgotten.owner_tag.tolist() == [b""]
    ds.forget("d", np.flatnonzero(v.table.owners == "o3"), {"kind": "forget"})
    assert ds.key("d").tag("owner", "o3") in ds.view("d").forgotten.owner_tag.tolist()


def test_relabels_and_drops_read_per_revision_and_a_forget_rewrites_the_manifests_that_named_it(ds):
    st = ds.cumulative("d").relabel(np.array([4]), np.array([0]))
    ds.write_state("d", st, {"kind": "relabel", "labels": [{"id": "id-4", "from": "b", "to": "a"}]})
    st = ds.cumulative("d").drop(np.array([5]))
    ds.write_state("d", st, {"kind": "drop", "ids": ["id-5"]})
    assert ds.view("d", 1).state.labels[4] == 1 and ds.view("d", 2).state.labels[4] == 0
    assert ds.view("d", 2).state.active[5] and not ds.view("d", 3).state.active[5]
    ds.forget("d", np.array([4, 5]), {"kind": "forget"})
    tag4, tag5 = (ds.key("d").tag("id", i).decode() for i in ("id-4", "id-5"))
    assert ds.store.get_json(L.dataset_revision("d", 2))["change"]["labels"] == [{"idTag": tag4, "forgottenAt": 4}]
    assert ds.store.get_json(L.dataset_revision("d", 3))["change"]["ids"] == [{"idTag": tag5, "forgottenAt": 4}]
    t = ds.view("d").forgotten
    assert dict(zip(t.id_tag.tolist(), t.since.tolist())) == {tag4.encode(): 4, tag5.encode(): 3}  # dropped at 3


def test_a_store_of_the_old_layout_is_refused_with_what_to_do(tmp_path):
    store = LocalStore(tmp_path)
    store.put_json(L.dataset_current("d"), {"revision": 3})
    with pytest.raises(InvalidInput, match="stored by an earlier Shardwise"):
        DatasetStore(store, L).view("d")
