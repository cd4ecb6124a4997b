"""Certificates that say exactly what happened, in every flow: deleted models with retained
checkpoints, Datasets in use, failed Datasets, requests that change nothing, empty shards.

Real training through the local body (trainer processes); digits unless a test needs a file.
"""

from __future__ import annotations

import numpy as np
import pytest

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.errors import InvalidInput
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.purge_scan import scan_for_forgotten
from shardwise.store.layout import Layout
from tests.helpers import dataset, forget, model
from tests.integration.exactness import published, version_doc

pytestmark = pytest.mark.slow
NS = "default"
L = Layout(NS)


@pytest.fixture
def world(local_store, tmp_path):
    logs: list[str] = []
    reg = Registry(local_store, NS)
    runner = LocalRunner(local_store, NS, parallel=2, log=logs.append, log_dir=tmp_path / "logs")
    yield local_store, reg, runner, logs
    runner.executor.stop_all()


def _train(reg, runner, name="m", **spec) -> ShardedModel:
    reg.apply(model(name, shards=3, slices=2, epochs=1, **spec))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, name)
    assert m.status.phase == "Ready", m.status
    return m


def _sample(runner, shard: int, slc: int, spec=(3, 2)) -> str:
    v = runner.view("digits")
    a = v.assignment(*spec, 0, True)
    return str(v.table.ids[np.flatnonzero((a.shard == shard) & (a.slice == slc))[0]])


def test_a_deleted_models_retained_checkpoints_are_purged_and_certified(world):
    store, reg, runner, _ = world
    reg.apply(dataset())
    live = _train(reg, runner, "live")
    gone = _train(reg, runner, "old")  # storagePolicy Retain (the default)
    old_version = published(store, gone)
    reg.delete(ShardedModel, "old")
    assert store.exists(old_version.chains[1][1].key)  # retained
    sample = _sample(runner, 1, 1)
    reg.apply(forget("f", ids=[sample]))
    runner.run(timeout=300)
    fr = reg.require(ForgetRequest, "f")
    assert fr.status.phase == "Complete" and "1 deleted, checkpoints retained" in fr.status.message
    by_model = {c["model"]: c for c in fr.status.certificate["models"]}
    assert set(by_model) == {"live", "old"} and by_model["old"]["deleted"] is True
    held = {old_version.chains[1][1].key}  # shard 1 after slice 1: the only checkpoint that read the sample
    assert set(by_model["old"]["purgedCheckpoints"]) == held and by_model["old"]["retrainedShards"] == []
    assert by_model["old"]["versionsThatHeldSamples"] == [1]
    assert not store.exists(old_version.chains[1][1].key)
    assert store.exists(old_version.chains[1][0].key) and store.exists(old_version.chains[0][1].key)  # untouched
    assert not store.exists(L.version("old", gone.metadata.uid, 1))  # it held the sample: no version serves it
    assert not store.exists(L.current("old", gone.metadata.uid))
    assert by_model["live"]["retrainedShards"] == [{"shard": 1, "fromSlice": 1}]
    assert scan_for_forgotten(store, NS, [reg.require(ShardedModel, "live")]).clean  # the deleted one too
    assert live.metadata.uid != gone.metadata.uid


def test_a_dataset_in_use_is_not_deleted_and_a_deleted_one_can_still_be_forgotten_from(world):
    store, reg, runner, _ = world
    reg.apply(dataset())
    m = _train(reg, runner)
    with pytest.raises(InvalidInput, match="Dataset digits is used by ShardedModel m: delete them first"):
        reg.delete(Dataset, "digits")
    v1 = published(store, m)
    reg.delete(ShardedModel, "m")  # retained
    reg.delete(Dataset, "digits")  # nothing uses it now; its data stays in the store
    sample = _sample(runner, 0, 0)
    reg.apply(forget("f", ids=[sample]))
    runner.run(timeout=300)
    fr = reg.require(ForgetRequest, "f")
    assert fr.status.phase == "Complete", fr.status
    (cert,) = fr.status.certificate["models"]
    assert cert["deleted"] and set(cert["purgedCheckpoints"]) == {r.key for r in v1.chains[0]}


def test_a_failed_dataset_retries_and_its_models_say_why(world, tmp_path):
    store, reg, runner, _ = world
    src = tmp_path / "late.csv"
    reg.apply(Dataset.model_validate({"kind": "Dataset", "metadata": {"name": "d"},
                                      "spec": {"source": {"uri": str(src)}}}))
    reg.apply(model("m", dataset="d", shards=2, slices=1, epochs=1))
    reg.apply(model("orphan", dataset="nowhere", shards=2, slices=1, epochs=1))
    runner.run(timeout=60)
    assert reg.require(Dataset, "d").status.phase == "Failed"
    ready = reg.require(ShardedModel, "m").status.condition("Ready")
    assert ready.reason == "DatasetFailed" and ready.message.startswith("Dataset 'd' failed: ")
    assert "no such file" in ready.message
    orphan = reg.require(ShardedModel, "orphan").status.condition("Ready")
    assert orphan.reason == "DatasetNotFound" and "Dataset 'nowhere' does not exist" in orphan.message
    src.write_text("id,label,a,b\n" + "".join(f"r{i},{i % 2},{i % 2 + 0.1 * i},{i % 3}\n" for i in range(80)))
    runner.run(timeout=300)  # reconciled again: the source is readable now
    assert reg.require(Dataset, "d").status.phase == "Ready"
    assert reg.require(ShardedModel, "m").status.phase == "Ready"


def test_a_request_that_changes_nothing_certifies_nothing_and_writes_no_revision(world):
    store, reg, runner, _ = world
    reg.apply(dataset())
    _train(reg, runner)
    reg.apply(forget("first", ids=[_sample(runner, 2, 0)]))  # a real retrain of shard 2
    runner.run(timeout=300)
    first = reg.require(ForgetRequest, "first").status.certificate
    assert first["models"][0]["retrainedShards"] == [{"shard": 2, "fromSlice": 0}]
    rev = reg.require(Dataset, "digits").status.revision

    sid = first and reg.require(ForgetRequest, "first").spec.sampleIds[0]
    reg.apply(forget("again", ids=[sid]))
    runner.run(timeout=60)
    again = reg.require(ForgetRequest, "again").status
    assert again.phase == "Complete" and again.samples == 0 and again.alreadyForgotten == 1
    assert again.certificate["models"] == [] and again.certificate["datasetRevision"] is None
    assert reg.require(Dataset, "digits").status.revision == rev  # no empty revision

    v = runner.view("digits")
    test_id = str(v.table.ids[np.flatnonzero(~v.train)[0]])  # a test sample: no model trained on it
    reg.apply(forget("test-only", ids=[test_id]))
    runner.run(timeout=300)
    cert = reg.require(ForgetRequest, "test-only").status.certificate
    (mc,) = cert["models"]
    assert cert["samplesForgotten"] == 1 and cert["datasetRevision"] == rev + 1
    # nothing of the earlier request's retrain is claimed
    assert mc["retrainedShards"] == [] and mc["purgedCheckpoints"] == [] and mc["newCheckpoints"] == []
    assert mc["versionsThatHeldSamples"] == [] and mc["retrainSeconds"] == 0


def test_two_requests_each_certify_only_their_own_shard(world):
    store, reg, runner, logs = world
    reg.apply(dataset())
    _train(reg, runner)
    a, b = _sample(runner, 0, 1), _sample(runner, 2, 0)
    reg.apply(forget("fa", ids=[a]))
    reg.apply(forget("fb", ids=[b]))
    runner.run(timeout=300)
    ca = reg.require(ForgetRequest, "fa").status.certificate["models"][0]
    cb = reg.require(ForgetRequest, "fb").status.certificate["models"][0]
    assert ca["retrainedShards"] == [{"shard": 0, "fromSlice": 1}]
    assert cb["retrainedShards"] == [{"shard": 2, "fromSlice": 0}]
    assert all("/shard-0/" in k for k in ca["purgedCheckpoints"]) and ca["purgedCheckpoints"]
    assert all("/shard-2/" in k for k in cb["purgedCheckpoints"]) and len(cb["purgedCheckpoints"]) == 2
    assert {c["shard"] for c in ca["newCheckpoints"]} == {0} and {c["shard"] for c in cb["newCheckpoints"]} == {2}
    line = next(m for m in logs if "forgets" in m)  # one revision, counted per request
    assert "1 sample(s) for fa" in line and "1 sample(s) for fb" in line


def test_an_emptied_shard_stops_voting_and_a_model_with_no_training_sample_fails(world, tmp_path):
    store, reg, runner, _ = world
    src = tmp_path / "few.csv"
    src.write_text("id,label,owner,a\n" + "".join(f"r{i},{i % 2},{'p' if i < 30 else ''},{i % 2}\n"
                                                  for i in range(40)))
    reg.apply(Dataset.model_validate({"kind": "Dataset", "metadata": {"name": "d"},
                                      "spec": {"source": {"uri": str(src)}}}))
    reg.apply(model("m", dataset="d", shards=4, slices=1, epochs=20))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    v = runner.view("d")
    p_train = int((v.train & (v.table.owners == "p")).sum())
    counts = m.status.placement["shardSamples"]
    big = int(np.argmax(counts))  # owner p's training samples share one shard
    assert counts[big] >= p_train and sum(counts) == int(v.train.sum())
    assert m.status.condition("PlacementSparse").status == "True"  # ~32 samples over 4 slices
    reg.apply(forget("f", dataset="d", ids=[f"r{i}" for i in range(30, 40)]))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    assert m.status.placement["emptyShards"] == [k for k in range(4) if k != big]
    doc = version_doc(store, m)
    assert doc["shardSamples"] == [p_train if k == big else 0 for k in range(4)]
    # the held-out accuracy is the one voting shard's alone (three shards of random weights would blur it)
    from shardwise.brain.versions import VersionManifest
    from shardwise_trainer.train import predict_proba

    ver = VersionManifest.from_dict(doc)
    assert ver.voting() == [k == big for k in range(4)]
    v = runner.view("d")
    test = np.flatnonzero(~v.train & v.state.active)
    alone = predict_proba(store, m.spec, [ver.finals()[big]], v.table.features[test], 2)[0].argmax(1)
    assert m.status.accuracy == round(float((alone == v.state.labels[test]).mean()), 4)

    reg.apply(forget("all", dataset="d", owner="p"))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    assert m.status.phase == "Failed" and m.status.condition("Failed").reason == "NoTrainingSamples"
    assert "no shard has a training sample" in m.status.condition("Failed").message
    # its published version still holds p's samples and has no successor: the request waits, saying why
    fr = reg.require(ForgetRequest, "all")
    assert fr.status.phase != "Complete" and "m failed: no shard has a training sample" in fr.status.message
    reg.delete(ShardedModel, "m")  # checkpoints retained: the forget purges them
    runner.run(timeout=300)
    fr = reg.require(ForgetRequest, "all")
    assert fr.status.phase == "Complete" and fr.status.certificate["models"][0]["deleted"]
    assert scan_for_forgotten(store, NS, []).clean


def test_long_jobs_print_a_progress_line_per_slice(world):
    store, reg, runner, logs = world
    reg.apply(dataset())
    reg.apply(model("m", shards=1, slices=3, epochs=150))  # about a second a slice
    runner.run(timeout=300)
    lines = [m for m in logs if m.startswith("shardedmodel/m: shard 0 slice ")]
    assert lines and all("trained (" in m and "/3, job m-s0-r1-f0)" in m for m in lines), logs


def test_a_dataset_made_again_from_a_source_that_still_holds_forgotten_rows_leaves_them_out(world, tmp_path):
    store, reg, runner, _ = world
    src = tmp_path / "v1.csv"
    rows = "".join(f"r{i},{i % 2},{'carol' if i < 5 else ''},{i}\n" for i in range(40))
    src.write_text("id,label,owner,a\n" + rows)
    doc = {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"source": {"uri": str(src)}}}
    reg.apply(Dataset.model_validate(doc))
    runner.run(timeout=60)
    reg.apply(forget("f-owner", dataset="d", owner="carol"))
    reg.apply(forget("f-id", dataset="d", ids=["r20"]))
    runner.run(timeout=60)
    assert {reg.require(ForgetRequest, n).status.phase for n in ("f-owner", "f-id")} == {"Complete"}
    reg.delete(Dataset, "d")  # nothing uses it; its stored data (and tombstones) stay
    v2 = tmp_path / "v2.csv"  # the next export still holds them, and carol has a new row
    v2.write_text("id,label,owner,a\n" + rows + "r40,0,carol,1\nr41,1,,2\n")
    reg.apply(Dataset.model_validate({**doc, "spec": {"source": {"uri": str(v2)}}}))
    runner.run(timeout=60)
    ds = reg.require(Dataset, "d")
    assert ds.status.phase == "Ready" and ds.status.skippedForgotten == 7  # r0..r4, r20, and carol's r40
    ids = set(runner.view("d").table.ids.tolist())
    assert ids == {f"r{i}" for i in range(5, 42) if i not in (20, 40)}
    # a request for them again finds them forgotten, not unknown
    reg.apply(forget("again", dataset="d", owner="carol"))
    runner.run(timeout=60)
    again = reg.require(ForgetRequest, "again").status
    assert again.phase == "Complete" and again.samples == 0 and again.alreadyForgotten == 5
