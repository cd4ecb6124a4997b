"""Held-out accuracy of a published model version, and an Experiment's diagnosis (the evaluation Job's work)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shardwise.api.jobs import EvaluationRequest, EvaluationResult
from shardwise.api.model import ShardedModelSpec
from shardwise.brain.ensemble import aggregate
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise_trainer.train import predict_proba


def evaluate_version(store: Store, request: EvaluationRequest | dict[str, Any]) -> dict[str, Any]:
    """request: namespace, model, uid, version, spec, and optionally split (test, train, all) and
    output (a store key; default the model's evals/). Writes and returns the evaluation.

    An Experiment's request also has "experiment" and "predictions" (a store key): then every
    active sample is predicted, the predictions are written there, and the output is the full
    report (see `experiment_report`)."""
    req = EvaluationRequest.model_validate(request)
    L = Layout(req.namespace)
    spec = req.spec
    name, uid, n = req.model, req.uid, req.version
    version = VersionManifest.from_dict(store.get_json(L.version(name, uid, n)))
    # an Experiment may test on a later revision (corrected labels); otherwise the version's own
    datasets = DatasetStore(store, L)
    view = datasets.view(spec.datasetRef, req.datasetRevision or version.revision)
    split = req.split
    if req.predictions:
        # samples dropped since the tested revision stay out (forgotten ones are in no view)
        result = experiment_report(store, req, version, view, view.dropped_now)
        store.put_json(req.output or L.experiment_report(req.experiment or name), result)
        return result
    chosen = {"test": ~view.train, "train": view.train, "all": np.ones_like(view.train)}[split]
    test = np.flatnonzero(chosen & view.state.active)
    accuracy = None
    if test.size:
        probs = predict_proba(store, spec, version.finals(), view.table.features[test], len(view.table.class_names))
        pred = aggregate(probs, spec.aggregation, version.voting()).argmax(1)
        accuracy = float((pred == view.state.labels[test]).mean())
    result = EvaluationResult(version=n, split=split, samples=int(test.size), accuracy=accuracy).model_dump(mode="json")
    store.put_json(req.output or L.evaluation(name, uid, n), result)
    return result


def predict_all(store: Store, spec: ShardedModelSpec, finals: list[CheckpointRef], view: DatasetView,
                forgotten: np.ndarray | None = None, voting: list[bool] | None = None):
    """Predictions of every shard's final checkpoint over every active sample of the view's revision,
    less `forgotten` (a mask: samples tombstoned since, whose rows may no longer be written anywhere)."""
    from shardwise.diagnosis.predictions import Predictions

    act = np.flatnonzero(view.state.active & ~(forgotten if forgotten is not None else False))
    a = view.assignment(spec.shards, spec.slices, spec.training.seed, spec.groupBy == "owner")
    names = view.table.class_names
    probs = predict_proba(store, spec, finals, view.table.features[act], len(names))
    return Predictions(view.table.ids[act], view.state.labels[act].astype(np.int64), view.train[act], a.shard[act],
                       a.slice[act], probs.astype(np.float32), tuple(names), spec.aggregation,
                       None if voting is None else np.asarray(voting, dtype=bool))


def experiment_report(store: Store, req: EvaluationRequest, version: VersionManifest, view: DatasetView,
                      forgotten_now: np.ndarray) -> dict[str, Any]:
    """Writes predictions.npz to req.predictions and returns the report (the output is written
    after it, so a report always has its predictions). With req.baseline (experiment, report
    and predictions keys), the report's `comparison` is against that Experiment's stored run.

    forgotten_now: the rows dropped at the Dataset's current revision (forgotten samples are in no
    view). Testing an older revision, they stay out: the purge would take them out again."""
    from shardwise.diagnosis.diagnose import diagnose

    spec, split = req.spec, req.split
    if req.predictions is None:
        raise ValueError("predictions: an Experiment's request names where its predictions go")
    preds = predict_all(store, spec, version.finals(), view, forgotten_now, version.voting())
    store.put_verified(req.predictions, preds.to_npz())
    report = {"experiment": req.experiment, "model": req.model, "modelUid": req.uid,
              "version": version.version,
              "dataset": spec.datasetRef, "datasetRevision": view.state.revision, "modelRevision": version.revision,
              "split": split,
              **diagnose(preds, split), "predictionsKey": req.predictions, "comparison": None}
    if req.baseline:
        report["comparison"] = compare_with_baseline(store, report, preds, req.baseline.model_dump())
    return report


def compare_with_baseline(store: Store, report: dict[str, Any], preds, baseline: dict[str, str]) -> dict[str, Any]:
    """The comparison with the baseline's stored report and predictions; when they are gone (the
    baseline re-ran, or was purged) the comparison says so instead of failing the whole run."""
    from shardwise.diagnosis.compare import compare
    from shardwise.diagnosis.predictions import Predictions
    from shardwise.errors import NotFound

    name = baseline["experiment"]
    try:
        base_report = store.get_json(baseline["report"])
    except NotFound:
        return {"baseline": name, "baselineVersion": None, "error": f"Experiment {name} has no report"}
    try:
        base_preds = Predictions.from_npz(store.get_verified(baseline["predictions"]))
    except NotFound:  # the version is recorded, so the reconciler does not retry this forever
        return {"baseline": name, "baselineVersion": base_report.get("version"),
                "error": f"Experiment {name} has no predictions ({baseline['predictions']})"}
    base_report.setdefault("experiment", baseline["experiment"])
    return compare(report, base_report, preds, base_preds)
