"""As if never there: after a forget, the model equals, tensor for tensor, a model trained from
scratch in a fresh store on a new Dataset whose source is the old source without those rows.

For each source kind (the builtin digits, CSV, JSONL, a folder of PNG images) and for a forget by
owner and by ids, through the local body with real trainer processes. The builtin source cannot be
edited, so its "source without the rows" is the same digits table less those rows, ingested by the
same DatasetStore.ingest a source goes through.

The property test below does the same in-process over random forget sets (whole owners, the last
sample of a class, a whole shard).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.api.dataset import DatasetSpec
from shardwise.brain.versions import VersionManifest
from shardwise.control import StoreControl
from shardwise.data.sources import load_digits
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from tests.helpers import forget, model
from tests.integration.exactness import published, train_in_process

pytestmark = pytest.mark.slow
NS = "default"
ROWS = 450  # of digits: enough for 3 x 2 shards and slices, quick to train
OWNER_RUN = 15


def _digits() -> SampleTable:
    t = load_digits(OWNER_RUN)
    keep = np.arange(ROWS)
    return SampleTable(t.ids[keep], t.labels[keep], t.features[keep], t.owners[keep], t.class_names)


def write_source(kind: str, folder: Path, drop: set[str]) -> dict:
    """The source of `kind` in `folder`, without the rows whose ids are in `drop`; its spec.source."""
    t = _digits()
    rows = [i for i in range(len(t)) if t.ids[i] not in drop]
    folder.mkdir(parents=True, exist_ok=True)
    x = t.features.reshape(len(t), -1)
    label = [t.class_names[c] for c in t.labels]
    if kind == "csv":
        lines = ["id,label,owner," + ",".join(f"p{j}" for j in range(x.shape[1]))]
        lines += [f"{t.ids[i]},{label[i]},{t.owners[i]}," + ",".join(repr(float(v)) for v in x[i]) for i in rows]
        (folder / "d.csv").write_text("\n".join(lines) + "\n")
        return {"uri": str(folder / "d.csv")}
    if kind == "jsonl":
        (folder / "d.jsonl").write_text("".join(json.dumps({"id": str(t.ids[i]), "label": label[i],
                                                            "owner": str(t.owners[i]),
                                                            "features": [float(v) for v in x[i]]}) + "\n"
                                                for i in rows))
        return {"uri": str(folder / "d.jsonl")}
    assert kind == "images"
    lines = ["file,label,owner"]
    for i in rows:
        px = np.round(t.features[i, 0] * 255).astype(np.uint8)
        Image.fromarray(px, mode="L").save(folder / f"{t.ids[i]}.png")
        lines.append(f"{t.ids[i]}.png,{label[i]},{t.owners[i]}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return {"uri": str(folder), "imageSize": 8}


def dataset_doc(source: dict) -> Dataset:
    return Dataset.model_validate({"kind": "Dataset", "metadata": {"name": "d"},
                                   "spec": {"source": source, "testFraction": 0.2}})


def the_model(kind: str) -> ShardedModel:
    arch = {"architecture": {"kind": "cnn", "hiddenUnits": [16]}} if kind == "images" else {}
    return model("m", dataset="d", shards=3, slices=2, epochs=2, **arch)


def assert_same_model(store_a, a: VersionManifest, store_b, b: VersionManifest) -> None:
    assert a.shard_samples == b.shard_samples
    for k, (ca, cb) in enumerate(zip(a.chains, b.chains)):
        ta = torch.load(io.BytesIO(store_a.get_verified(ca[-1].key, ca[-1].sha256)), weights_only=True)["model"]
        tb = torch.load(io.BytesIO(store_b.get_verified(cb[-1].key, cb[-1].sha256)), weights_only=True)["model"]
        assert ta.keys() == tb.keys() and all(torch.equal(ta[n], tb[n]) for n in ta), f"shard {k} differs"
        assert ca[-1].weights_sha256 == cb[-1].weights_sha256, f"shard {k}: weights hash"


def _run(store, tmp: Path) -> tuple[Registry, LocalRunner]:
    return Registry(store, NS), LocalRunner(store, NS, parallel=2, log=lambda m: None, log_dir=tmp / "logs")


@pytest.mark.parametrize("how", ["owner", "ids"])
@pytest.mark.parametrize("kind", ["digits", "csv", "jsonl", "images"])
def test_a_forget_equals_training_on_the_source_without_the_rows(kind, how, tmp_path):
    full = write_source(kind, tmp_path / "src", set()) if kind != "digits" else {"builtin": "digits",
                                                                                  "ownersPerSample": OWNER_RUN}
    store = LocalStore(tmp_path / "a")
    reg, runner = _run(store, tmp_path)
    reg.apply(dataset_doc(full))
    reg.apply(the_model(kind))
    runner.run(timeout=300)
    v = runner.view("d")
    a = v.assignment(3, 2, 0, True)
    if how == "owner":  # an owner with training samples in slice 1 of some shard
        owner = str(v.table.owners[np.flatnonzero(a.slice == 1)[0]])
        gone = set(v.table.ids[v.table.owners == owner].tolist())
        reg.apply(forget("f", dataset="d", owner=owner))
    else:  # training samples of two shards and a test sample
        picks = [int(np.flatnonzero(a.shard == k)[-1]) for k in (0, 2)] + [int(np.flatnonzero(a.shard < 0)[0])]
        gone = set(v.table.ids[picks].tolist())
        reg.apply(forget("f", dataset="d", ids=sorted(gone)))
    runner.run(timeout=300)
    assert reg.require(ForgetRequest, "f").status.phase == "Complete"
    after = published(store, reg.require(ShardedModel, "m"))

    fresh = LocalStore(tmp_path / "b")
    reg_b, runner_b = _run(fresh, tmp_path)
    if kind == "digits":
        t = load_digits(OWNER_RUN)
        keep = ~np.isin(t.ids, list(gone))
        reduced = SampleTable(t.ids[keep], t.labels[keep], t.features[keep], t.owners[keep], t.class_names)
        spec = dataset_doc(full).spec
        DatasetStore(fresh, Layout(NS)).ingest("d", spec, reduced)
        reg_b.apply(dataset_doc(full))
    else:
        reg_b.apply(dataset_doc(write_source(kind, tmp_path / "src-without", gone)))
    reg_b.apply(the_model(kind))
    runner_b.run(timeout=300)
    assert reg_b.require(Dataset, "d").status.activeSamples == len(v.table) - len(gone)
    assert_same_model(store, after, fresh, published(fresh, reg_b.require(ShardedModel, "m")))


# -- the property, in-process -------------------------------------------------------------------
N_SMALL = 90
SPEC = DatasetSpec.model_validate({"source": {"builtin": "digits"}, "testFraction": 0.25,
                                   "classes": ["a", "b", "c"]})


def small_table() -> SampleTable:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, N_SMALL)
    labels[N_SMALL - 1] = 2  # ... and make one class rare: only a few samples of "c"
    labels[labels == 2] = rng.choice([0, 1, 2], size=int((labels == 2).sum()), p=[0.45, 0.45, 0.1])
    labels[N_SMALL - 1] = 2
    x = (rng.normal(size=(N_SMALL, 4)) + labels[:, None]).astype(np.float32)
    owners = np.array([f"o{i // 6}" if i % 3 else "" for i in range(N_SMALL)])
    return SampleTable(np.array([f"r{i:03d}" for i in range(N_SMALL)]), labels.astype(np.int64), x, owners,
                       ("a", "b", "c"))


SMALL_MODEL = model("m", dataset="d", shards=3, slices=3, epochs=1).spec


def _owner_rows(owner: str) -> list[int]:
    return np.flatnonzero(small_table().owners == owner).tolist()


def _class_rows() -> list[int]:
    """Every sample of the rarest class: the class stays, with no sample left."""
    return np.flatnonzero(small_table().labels == 2).tolist()


def _shard_rows(shard: int) -> list[int]:
    """Every training sample of one shard: it is left empty and stops voting, as in a fresh training."""
    from shardwise.brain.assignment import assign, sample_words
    from shardwise.datasets import split_mask

    t = small_table()
    _, group_w = sample_words(SPEC.seed, t.ids, t.owners)
    a = assign(group_w, split_mask(t.ids, SPEC.testFraction, SPEC.seed), 3, 3, SMALL_MODEL.training.seed)
    return np.flatnonzero(a.shard == shard).tolist()


@st.composite
def forget_sets(draw) -> list[int]:
    how = draw(st.sampled_from(["ids", "owner", "class", "shard"]))
    if how == "owner":
        return _owner_rows(draw(st.sampled_from(sorted({o for o in small_table().owners.tolist() if o}))))
    if how == "class":
        return _class_rows()
    if how == "shard":
        return _shard_rows(draw(st.integers(0, 2)))
    return sorted(set(draw(st.lists(st.integers(0, N_SMALL - 1), min_size=1, max_size=12))))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rows=forget_sets())
@example(rows=[N_SMALL - 1])  # one sample of the rare class
@example(rows=_owner_rows("o1"))  # a whole owner
@example(rows=_class_rows())  # the last samples of a class
@example(rows=_shard_rows(1))  # a whole shard
def test_any_forget_set_equals_training_without_those_rows(rows, tmp_path_factory):
    t = small_table()
    tmp = tmp_path_factory.mktemp("prop")
    store = LocalStore(tmp / "a")
    DatasetStore(store, Layout(NS)).ingest("d", SPEC, t)
    chains = train_in_process(store, SMALL_MODEL, revision=1)
    control = StoreControl(store, NS)
    ids = t.ids[rows].tolist()
    fr = forget("f", dataset="d", ids=ids)
    fr.metadata.creationTimestamp = "2026-01-01T00:00:00Z"
    (status,) = control.accept_forgets("d", [fr]).values()
    assert status.samples == len(ids) and status.datasetRevision == 2
    after = train_in_process(store, SMALL_MODEL, revision=2, chains=chains)

    fresh = LocalStore(tmp / "b")
    keep = ~np.isin(t.ids, ids)
    DatasetStore(fresh, Layout(NS)).ingest("d", SPEC, SampleTable(t.ids[keep], t.labels[keep], t.features[keep],
                                                                   t.owners[keep], t.class_names))
    ref = train_in_process(fresh, SMALL_MODEL, revision=1)
    for k in range(SMALL_MODEL.shards):
        ta = torch.load(io.BytesIO(store.get_verified(after[k][-1].key)), weights_only=True)["model"]
        tb = torch.load(io.BytesIO(fresh.get_verified(ref[k][-1].key)), weights_only=True)["model"]
        assert all(torch.equal(ta[n], tb[n]) for n in ta), f"shard {k} differs after forgetting rows {rows}"
    assert DatasetStore(store, Layout(NS)).view("d").table.class_names == ("a", "b", "c")  # classes stay


def test_the_demo_proves_the_same_equality(capsys):
    from shardwise.cli import main

    assert main(["--parallel", "2", "demo", "--json", "--shards", "3", "--slices", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["exact"] is True and summary["samples_forgotten"] == 20
    assert summary["exact_detail"]["shards_equal_training_on_source_without_rows"] == [True] * 3
    assert "fresh store" in summary["exact_reference"] and "without the rows" in summary["exact_reference"]
    assert len(summary["retrained_shards"]) == 1  # one owner: one shard
