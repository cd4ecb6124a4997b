"""An Experiment finds labels flipped on purpose: digits with 5 % of the training labels wrong,
trained by the real trainer through the local body, diagnosed by the evaluation's report."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shardwise.api import Experiment, ShardedModel
from shardwise.diagnosis.predictions import Predictions
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from tests.helpers import dataset, experiment, model

pytestmark = pytest.mark.slow  # trains a real 5-shard model through trainer processes (~20 s on 2 cores)
NS, FLIP, SEED = "default", 0.05, 11
SHARDS, SLICES = 5, 2


def flip(runner: LocalRunner, fraction: float, seed: int) -> dict[str, tuple[str, str]]:
    """Relabel `fraction` of the training samples to another class: id -> (true label, wrong label)."""
    v = runner.view("digits")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(np.flatnonzero(v.train), round(fraction * v.train.sum()), replace=False))
    names, c = v.table.class_names, len(v.table.class_names)
    wrong = (v.state.labels[idx] + rng.integers(1, c, idx.size)) % c
    flipped = {str(v.table.ids[i]): (names[v.state.labels[i]], names[w]) for i, w in zip(idx, wrong)}
    runner.control.relabel("digits", {i: w for i, (_, w) in flipped.items()}, by="noise-injector")
    return flipped


def test_an_experiment_recovers_flipped_labels_and_its_metrics_add_up(local_store):
    store, L = local_store, Layout(NS)
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None)
    reg.apply(dataset())
    runner.run(timeout=60)
    flipped = flip(runner, FLIP, SEED)
    reg.apply(model("m", shards=SHARDS, slices=SLICES, architecture={"kind": "mlp", "hiddenUnits": [128]},
                    training={"epochsPerSlice": 16, "batchSize": 32, "learningRate": 0.002}))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    assert m.status.phase == "Ready" and m.status.datasetRevision == 2

    reg.apply(experiment("noisy"))
    t0 = time.perf_counter()
    runner.run(timeout=120)
    seconds = time.perf_counter() - t0
    x = reg.require(Experiment, "noisy")
    assert x.status.phase == "Succeeded" and x.status.reportKey == L.experiment_report("noisy")
    report = store.get_json(x.status.reportKey)
    preds = Predictions.from_npz(store.get_bytes(report["predictionsKey"]))

    # the report's identity, and predictions over every active sample with the trainer's assignment
    v = runner.view("digits", 2)
    assert {k: report[k] for k in ("experiment", "model", "version", "dataset", "datasetRevision", "split")} == {
        "experiment": "noisy", "model": "m", "version": 1, "dataset": "digits", "datasetRevision": 2, "split": "test"}
    assert report["predictionsKey"] == L.experiment_predictions("noisy") and report["comparison"] is None
    assert preds.probs.shape == (SHARDS, int(v.state.active.sum()), 10) and preds.ids.tolist() == v.table.ids.tolist()
    a = v.assignment(SHARDS, SLICES, 0, True)
    np.testing.assert_array_equal(preds.shard, a.shard)
    np.testing.assert_array_equal(preds.slice, a.slice)
    np.testing.assert_array_equal(preds.labels, v.state.labels)  # the flipped labels: what the model was given

    # the metrics add up: accuracy is the fraction the ensemble gets right; the confusion counts every sample
    test = preds.split("test")
    right = test.predicted() == test.labels
    assert report["samples"] == len(test) == int((~v.train).sum())
    assert report["accuracy"] == report["metrics"]["accuracy"] == pytest.approx(right.mean())
    # the model's own (plain) evaluation agrees; a status shows a figure to four decimals (kubectl cannot round)
    assert m.status.accuracy == round(report["accuracy"], 4)
    plain = store.get_json(L.evaluation("m", m.metadata.uid, 1))
    assert set(plain) == {"version", "split", "samples", "accuracy"}  # and keeps its small shape
    conf = np.array(report["metrics"]["confusion"])
    assert conf.sum() == len(test) and np.trace(conf) == right.sum()
    assert conf.sum(axis=1).tolist() == [c["support"] for c in report["metrics"]["perClass"]]
    assert sum(b["count"] for b in report["metrics"]["calibration"]) == len(test)
    assert len(report["perShard"]) == SHARDS and len(report["hardest"]) == 50
    assert (x.status.accuracy, x.status.macroF1, x.status.calibrationError, x.status.labelIssues,
            x.status.modelVersion) \
        == (round(report["accuracy"], 4), round(report["metrics"]["macroF1"], 4),
            round(report["metrics"]["calibrationError"], 4), report["labelIssues"]["flagged"], 1)

    # the candidates recover the flipped labels, and suggest the true ones
    k = len(flipped)
    top = report["labelIssues"]["candidates"][: 2 * k]
    hits = [c for c in top if c["id"] in flipped]
    recall = len(hits) / k
    suggested_right = np.mean([c["suggested"] == flipped[c["id"]][0] for c in hits])
    print(f"\n{k} flipped; recall@2k {recall:.3f}; precision@k "
          f"{sum(c['id'] in flipped for c in top[:k]) / k:.3f}; suggestion = true label for {suggested_right:.3f} of "
          f"the hits; test accuracy {report['accuracy']:.3f}; flagged {report['labelIssues']['flagged']}; "
          f"Experiment run {seconds:.2f} s")
    assert recall >= 0.8
    assert suggested_right >= 0.8
