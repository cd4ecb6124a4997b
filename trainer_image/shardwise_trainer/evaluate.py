"""Held-out accuracy of a published model version (the evaluation Job's work)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shardwise.api.model import ShardedModelSpec
from shardwise.brain.ensemble import aggregate
from shardwise.brain.versions import VersionManifest
from shardwise.datasets import DatasetStore
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise_trainer.train import predict_proba


def evaluate_version(store: Store, request: dict[str, Any]) -> dict[str, Any]:
    """request: namespace, model, uid, version, spec, and optionally split (test, train, all) and
    output (a store key; default the model's evals/). Writes and returns the evaluation."""
    L = Layout(request["namespace"])
    spec = ShardedModelSpec.model_validate(request["spec"])
    name, uid, n = request["model"], request["uid"], int(request["version"])
    version = VersionManifest.from_dict(store.get_json(L.version(name, uid, n)))
    view = DatasetStore(store, L).view(spec.datasetRef, version.revision)
    split = request.get("split", "test")
    chosen = {"test": ~view.train, "train": view.train, "all": np.ones_like(view.train)}[split]
    test = np.flatnonzero(chosen & view.state.active)
    result: dict[str, Any] = {"version": n, "split": split, "samples": int(test.size), "accuracy": None}
    if test.size:
        probs = predict_proba(store, spec, version.finals(), view.table.features[test], len(view.table.class_names))
        pred = aggregate(probs, spec.aggregation).argmax(1)
        result["accuracy"] = float((pred == view.state.labels[test]).mean())
    store.put_json(request.get("output") or L.evaluation(name, uid, n), result)
    return result
