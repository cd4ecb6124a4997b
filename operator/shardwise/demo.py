"""`shardwise demo`: train on digits, forget one person, prove it was exact.

The demo is the local body end to end: the same resources a cluster user
applies, the same reconciler, trainer subprocesses, a real certificate. Its source is
scikit-learn's digits written as a CSV file (with a synthetic owner key per 20 rows).
The full retrain it compares with is the same ShardedModel trained from scratch, in a
fresh store, on a new Dataset whose source is that CSV without the forgotten rows: its
final weights are the exactness reference for every shard ("as if never there").
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store import open_store
from shardwise.store.base import Store
from shardwise.store.layout import Layout

NS = "default"


def write_digits_csv(path: Path, owners_per_sample: int = 20, without_owner: str | None = None) -> int:
    """scikit-learn's digits as a CSV (id, label, owner, p0..p63), less one owner's rows. Returns the rows."""
    from shardwise.data.sources import load_digits

    t = load_digits(owners_per_sample)
    keep = t.owners != without_owner if without_owner is not None else np.ones(len(t), dtype=bool)
    x = t.features.reshape(len(t), -1)
    with path.open("w", encoding="utf-8") as f:
        f.write("id,label,owner," + ",".join(f"p{j}" for j in range(x.shape[1])) + "\n")
        for i in np.flatnonzero(keep):
            f.write(f"{t.ids[i]},{t.class_names[t.labels[i]]},{t.owners[i]},"
                    + ",".join(repr(float(v)) for v in x[i]) + "\n")
    return int(keep.sum())


def demo_resources(shards: int, slices: int, source: str) -> tuple[Dataset, ShardedModel]:
    ds = Dataset.model_validate({
        "kind": "Dataset", "metadata": {"name": "digits"},
        "spec": {"source": {"uri": source}, "testFraction": 0.2},
    })
    model = ShardedModel.model_validate({
        "kind": "ShardedModel", "metadata": {"name": "digits-mlp"},
        "spec": {"datasetRef": "digits", "shards": shards, "slices": slices,
                 "architecture": {"kind": "mlp", "hiddenUnits": [128]},
                 "training": {"epochsPerSlice": 16, "batchSize": 32, "learningRate": 0.002}},
    })
    return ds, model


def _published(store: Store, model: ShardedModel) -> tuple[VersionManifest, dict[str, Any]]:
    L = Layout(NS)
    uid = model.metadata.uid or ""
    n = store.get_json(L.current(model.name, uid))["version"]
    doc = store.get_json(L.version(model.name, uid, n))
    return VersionManifest.from_dict(doc), doc


def _compute(doc: dict[str, Any]) -> float:
    return float(sum(j.get("computeSeconds") or 0 for j in doc.get("jobs", [])))


def run_demo(shards: int = 4, slices: int = 4, owner: str | None = None, parallel: int = 2,
             store_uri: str | None = None, as_json: bool = False) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="shardwise-demo-")
    work = Path(tmp.name)
    if store_uri is None:
        store_uri = str(work / "store")
    store = open_store(store_uri)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    log = lambda m: say(f"  [{time.strftime('%H:%M:%S')}] {m}")  # noqa: E731
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=parallel, log=log)
    try:
        source = work / "digits.csv"
        write_digits_csv(source)
        ds, model = demo_resources(shards, slices, str(source))
        say(f"1/4 training ShardedModel digits-mlp: {shards} shards x {slices} slices on scikit-learn digits "
            f"({source.name})")
        reg.apply(ds)
        reg.apply(model)
        t0 = time.perf_counter()
        runner.run()
        train_wall = time.perf_counter() - t0
        model = reg.require(ShardedModel, "digits-mlp")
        if model.status is None or model.status.phase != "Ready":
            raise RuntimeError(f"training did not finish: {model.status}")
        before, before_doc = _published(store, model)
        acc_before = model.status.accuracy

        view = runner.view("digits")
        owners = sorted({o for o in view.table.owners.tolist() if o})
        if owner is None:
            owner = owners[int(np.random.default_rng(7).integers(len(owners)))]
        n_owned = int((view.table.owners == owner).sum())
        say(f"2/4 forgetting every sample of owner {owner!r} ({n_owned} samples)")
        fr = ForgetRequest.model_validate({
            "kind": "ForgetRequest", "metadata": {"name": "forget-demo"},
            "spec": {"datasetRef": "digits", "ownerKey": owner},
        })
        reg.apply(fr)
        t0 = time.perf_counter()
        runner.run()
        forget_wall = time.perf_counter() - t0
        model = reg.require(ShardedModel, "digits-mlp")
        fr = reg.require(ForgetRequest, "forget-demo")
        after, after_doc = _published(store, model)
        if fr.status is None or fr.status.phase != "Complete":
            raise RuntimeError(f"forget did not complete: {fr.status}")

        say("3/4 full retrain from scratch, in a fresh store, on the source without the forgotten rows "
            "(the speedup's baseline and the exactness reference)")
        reduced = work / "digits-without-owner.csv"
        write_digits_csv(reduced, without_owner=owner)
        fresh = open_store(str(work / "fresh-store"))
        fresh_reg = Registry(fresh, NS)
        ds2, model2 = demo_resources(shards, slices, str(reduced))
        fresh_reg.apply(ds2)
        fresh_reg.apply(model2)
        t0 = time.perf_counter()
        LocalRunner(fresh, NS, parallel=parallel, log=log).run()
        full_wall = time.perf_counter() - t0
        ref, ref_doc = _published(fresh, fresh_reg.require(ShardedModel, "digits-mlp"))

        retrained = sorted({(j["shard"], j["fromSlice"]) for j in after_doc.get("jobs", [])})
        touched = {k for k, _ in retrained}
        same_weights = [_same_tensors(store, a[-1], fresh, b[-1]) for a, b in zip(after.chains, ref.chains)]
        untouched_identical = all(
            [(r.key, r.sha256) for r in before.chains[k]] == [(r.key, r.sha256) for r in after.chains[k]]
            for k in range(shards) if k not in touched
        )
        retrain_s, full_s = _compute(after_doc), _compute(ref_doc)
        summary = {
            "shards": shards,
            "slices": slices,
            "owner": owner,
            "samples_forgotten": fr.status.samples,
            "accuracy_before": acc_before,
            "accuracy_after": model.status.accuracy if model.status else None,
            "retrained_shards": [{"shard": k, "from_slice": r} for k, r in retrained],
            "retrain_seconds": round(retrain_s, 3),
            "full_retrain_seconds": round(full_s, 3),
            "speedup_vs_full_retrain": round(full_s / retrain_s, 2) if retrain_s > 0 else None,
            "retrain_wall_seconds": round(forget_wall, 2),
            "full_retrain_wall_seconds": round(full_wall, 2),
            "train_wall_seconds": round(train_wall, 2),
            "exact": bool(all(same_weights) and untouched_identical),
            "exact_reference": "a model trained from scratch in a fresh store on the source without the rows",
            "exact_detail": {"shards_equal_training_on_source_without_rows": same_weights,
                             "untouched_shards_identical": untouched_identical},
            "version_before": before.version,
            "version_after": after.version,
            "certificate": fr.status.certificate,
        }
        say("4/4 summary")
        _print_summary(summary)
        if as_json:
            print(json.dumps(summary, sort_keys=True))
        return summary
    finally:
        tmp.cleanup()


def _same_tensors(store_a: Store, a: CheckpointRef, store_b: Store, b: CheckpointRef) -> bool:
    """torch.equal on every tensor of two checkpoints' models (and the same weights hash)."""
    import torch

    ta = torch.load(io.BytesIO(store_a.get_verified(a.key, a.sha256)), weights_only=True)["model"]
    tb = torch.load(io.BytesIO(store_b.get_verified(b.key, b.sha256)), weights_only=True)["model"]
    return (a.weights_sha256 == b.weights_sha256 and ta.keys() == tb.keys()
            and all(torch.equal(ta[k], tb[k]) for k in ta))


def _print_summary(s: dict[str, Any]) -> None:
    cert = s["certificate"] or {}
    m = (cert.get("models") or [{}])[0]
    lines = [
        f"  accuracy before forget : {s['accuracy_before']:.4f} (version {s['version_before']})",
        f"  accuracy after forget  : {s['accuracy_after']:.4f} (version {s['version_after']})",
        f"  forgotten              : {s['samples_forgotten']} samples of owner {s['owner']!r}",
        "  retrained              : " + ", ".join(f"shard {r['shard']} from slice {r['from_slice']}"
                                                  for r in s["retrained_shards"]),
        f"  retrain compute        : {s['retrain_seconds']:.2f} s  (wall {s['retrain_wall_seconds']:.1f} s)",
        f"  full retrain compute   : {s['full_retrain_seconds']:.2f} s  (wall {s['full_retrain_wall_seconds']:.1f} s)",
        f"  speedup vs full retrain: {s['speedup_vs_full_retrain']}x (trainer compute)",
        f"  exact                  : {str(s['exact']).lower()} (every shard equals, bit for bit, training from "
        "scratch on the source without the forgotten rows; untouched shards byte-identical)",
        f"  certificate            : dataset revision {cert.get('datasetRevision')}, "
        f"{len(m.get('purgedCheckpoints', []))} checkpoint(s) and "
        f"{len(m.get('purgedVersions', []))} version(s) purged, "
        f"{len(m.get('newCheckpoints', []))} new checkpoint(s); ledger {cert.get('ledgerEntry')}",
    ]
    print("\n".join(lines))
