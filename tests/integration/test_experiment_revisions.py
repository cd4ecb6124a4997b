"""An Experiment on a chosen Dataset revision, and what it may not write after a forget."""

from __future__ import annotations

import numpy as np

from shardwise.api import Experiment, ForgetRequest, ShardedModel
from shardwise.diagnosis.predictions import Predictions
from shardwise.diagnosis.redact import report_ids
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.purge_scan import scan_for_forgotten
from shardwise.store.layout import Layout
from tests.helpers import dataset, experiment, forget, model

NS = "default"
L = Layout(NS)


def test_an_old_version_tested_after_a_forget_leaves_the_forgotten_sample_out(local_store):
    store, reg = local_store, Registry(local_store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None)
    reg.apply(dataset())
    reg.apply(model("m", shards=2, slices=1, epochs=1))
    runner.run(timeout=300)
    v = runner.view("digits")
    gone = str(v.table.ids[np.flatnonzero(~v.train)[0]])  # a test sample: no version is purged for it
    reg.apply(forget("f1", ids=[gone]))
    runner.run(timeout=300)
    assert reg.require(ForgetRequest, "f1").status.phase == "Complete"
    assert store.exists(L.version("m", reg.require(ShardedModel, "m").metadata.uid, 1))

    # version 1 on revision 1, where the sample was still active: tested now, it stays out
    reg.apply(experiment("old", modelVersion=1, datasetRevision=1, split="all"))
    runner.run(timeout=300)
    x = reg.require(Experiment, "old")
    assert x.status.phase == "Succeeded" and x.status.modelVersion == 1
    report = store.get_json(L.experiment_report("old"))
    assert (report["datasetRevision"], report["modelRevision"]) == (1, 1)
    preds = Predictions.from_npz(store.get_verified(L.experiment_predictions("old")))
    assert gone not in preds.ids and len(preds) == len(v.table.ids) - 1
    assert gone not in report_ids(report)
    assert scan_for_forgotten(store, NS, reg.list(ShardedModel)).clean

    # a revision the Dataset has not reached is waited for, naming the field
    reg.apply(experiment("future", datasetRevision=9))
    runner.run(timeout=300)
    st = reg.require(Experiment, "future").status
    assert st.phase == "Pending" and "spec.datasetRevision" in st.condition("Ready").message
