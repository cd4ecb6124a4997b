"""In-process building blocks of the benchmarks: a sandbox store, real torch training, timing.

Everything runs the production code paths (DatasetStore, the brain's planner, the
trainer's train_shard), in this process, so trainer compute is measured without
process start-up; B4 measures the full local body separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from shardwise.api.dataset import DatasetSpec
from shardwise.api.model import ShardedModelSpec
from shardwise.brain.assignment import Assignment
from shardwise.brain.ensemble import aggregate
from shardwise.brain.lineage import CheckpointRef, plan_shard, slice_fingerprints
from shardwise.brain.revision import DatasetState
from shardwise.data.sources import load_digits
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore

NS = "bench"


def machine() -> dict[str, Any]:
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True,
                                  cwd=Path(__file__).parent.parent).stdout
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "operator", "trainer_image", "benchmarks").strip():
        commit += "-dirty"  # the code measured is not exactly that commit
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "commit": commit,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def synthetic(n: int = 100_000, d: int = 64, classes: int = 10, seed: int = 0) -> SampleTable:
    """Gaussian classes with overlap, so accuracy is informative (not 100 %)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, size=(classes, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, 3.0, size=(n, d)).astype(np.float32)
    return SampleTable(np.array([f"s{i:07d}" for i in range(n)]), y.astype(np.int64), x.astype(np.float32),
                       np.array([""] * n), tuple(str(c) for c in range(classes)))


def dataset(name: str, n: int | None = None) -> SampleTable:
    return load_digits(0) if name == "digits" else synthetic(n or 100_000)


@dataclass
class World:
    """One dataset ingested into a sandbox store."""

    store: Store
    tmp: tempfile.TemporaryDirectory
    table: SampleTable

    @classmethod
    def make(cls, table: SampleTable) -> World:
        tmp = tempfile.TemporaryDirectory(prefix="shardwise-bench-")
        store = LocalStore(tmp.name)
        DatasetStore(store, Layout(NS)).ingest("d", DatasetSpec(source={"builtin": "digits"}, testFraction=0.2), table)
        return cls(store, tmp, table)

    @property
    def datasets(self) -> DatasetStore:
        return DatasetStore(self.store, Layout(NS))

    def base(self) -> DatasetState:
        """The cumulative state as ingested (revision 1)."""
        return self.datasets.cumulative("d")

    def write_state(self, state: DatasetState) -> None:
        """A sandbox revision (each benchmark request is measured from the same trained model)."""
        self.datasets.write_state("d", state, {"kind": "benchmark"})


def branch(state: DatasetState, revision: int) -> DatasetState:
    """`state` renumbered so that its next transition (`.drop`, `.relabel`) is revision `revision`.

    Each benchmark request starts from the same trained revision, not from the request
    before it; its own revision number keeps its checkpoints (keyed by revision) apart.
    The revisions skipped read as `state` (`DatasetState.at`).

    A forget is simulated as a `.drop`: for the planner and the trainer's cost a dropped row
    and a forgotten row are the same (inactive from that revision on). A real forget also
    removes the row from the payload and leaves a tombstone; that changes nothing these
    benchmarks measure (B4 runs real forgets through the local body).
    """
    return replace(state, revision=revision - 1)


@contextmanager
def balanced_placement() -> Iterator[None]:
    """Inside the block, every DatasetView (the trainer's, the planner's, evaluation's) places
    samples by the PRE-CHANGE balanced permutation (benchmarks/balanced.py), a B1 baseline only.

    This stands in for the removed code: the old `DatasetView.assignment` placed the rows of
    the base sample list by `group_codes`. The benchmarks never remove rows (they drop), so
    today's rows are those base rows. Everything else (the split, the trainer's sample order
    by id word) is today's code, so the comparison isolates the placement."""
    from benchmarks.balanced import balanced_assign, group_codes

    def assignment(self: DatasetView, shards: int, slices: int, seed: int, by_owner: bool) -> Assignment:
        return balanced_assign(group_codes(self.table.owners, by_owner), self.train, shards, slices, seed)

    saved = DatasetView.assignment
    DatasetView.assignment = assignment  # type: ignore[method-assign]
    try:
        yield
    finally:
        DatasetView.assignment = saved  # type: ignore[method-assign]


def spec(shards: int, slices: int, epochs: int, batch: int, hidden: int = 128) -> ShardedModelSpec:
    return ShardedModelSpec(datasetRef="d", shards=shards, slices=slices, groupBy="none",
                            architecture={"kind": "mlp", "hiddenUnits": [hidden]},
                            training={"epochsPerSlice": epochs, "batchSize": batch, "learningRate": 2e-3})


def train(world: World, sp: ShardedModelSpec, model: str, shard: int, from_slice: int, revision: int,
          keep: tuple[CheckpointRef, ...] = ()) -> tuple[tuple[CheckpointRef, ...], float]:
    """One trainer job, in-process. Returns the shard's chain and the trainer's compute seconds."""
    from shardwise_trainer.train import train_shard

    request = {"job": f"{model}-{shard}-{revision}-{from_slice}", "namespace": NS, "model": model, "uid": "u",
               "spec": sp.model_dump(mode="json"), "dataset": "d", "shard": shard, "fromSlice": from_slice,
               "revision": revision, "keep": [k.to_dict() for k in keep]}
    refs, secs = train_shard(world.store, request)
    return tuple(keep) + tuple(refs), secs


def train_all(world: World, sp: ShardedModelSpec, model: str, revision: int = 1):
    chains, total = [], 0.0
    for k in range(sp.shards):
        chain, secs = train(world, sp, model, k, 0, revision)
        chains.append(chain)
        total += secs
    return chains, total


def retrain_for(world: World, sp: ShardedModelSpec, model: str, chains, state: DatasetState):
    """Plan with the brain, retrain what it says. Returns (new chains, compute seconds, plans)."""
    view = world.datasets.view("d", state.revision)
    a = view.assignment(sp.shards, sp.slices, sp.training.seed, False)
    fps = slice_fingerprints(a, view.state, view.id_words)
    new, total, plans = list(chains), 0.0, []
    for k in range(sp.shards):
        plan = plan_shard(k, chains[k], fps[k])
        if plan is None:
            continue
        new[k], secs = train(world, sp, model, k, plan.from_slice, state.revision, plan.keep)
        total += secs
        plans.append((k, plan.from_slice))
    return new, total, plans


def accuracy(world: World, sp: ShardedModelSpec, chains, revision: int = 1) -> float:
    from shardwise_trainer.train import predict_proba

    view = world.datasets.view("d", revision)
    test = np.flatnonzero(~view.train & view.state.active)
    probs = predict_proba(world.store, sp, [c[-1] for c in chains], view.table.features[test],
                          len(view.table.class_names))
    # as a published version votes: a shard with no training sample (hash placement can leave one
    # empty) has only its initial weights and does not vote
    a = view.assignment(sp.shards, sp.slices, sp.training.seed, sp.groupBy == "owner")
    voting = np.bincount(a.shard[(a.shard >= 0) & view.state.active], minlength=sp.shards) > 0
    return float((aggregate(probs, sp.aggregation, voting).argmax(1) == view.state.labels[test]).mean())


def spread(world: World, sp: ShardedModelSpec, revision: int = 1) -> dict[str, int]:
    """Smallest and largest shard and slice (training samples) of the placement in force."""
    view = world.datasets.view("d", revision)
    s = view.assignment(sp.shards, sp.slices, sp.training.seed, sp.groupBy == "owner").spread(view.state.active)
    return {"shard_min": min(s["shardSamples"]), "shard_max": max(s["shardSamples"]),
            "slice_min": s["sliceMin"], "slice_max": s["sliceMax"]}


def ideal_speedups(world: World, sp: ShardedModelSpec, requests: np.ndarray, revision: int = 1) -> dict[str, float]:
    """The cost model's speedup over the monolithic retrain, on the placement in force (no timing).

    A retrain of shard k from slice r trains as many samples as slices r..R-1 of k hold (the
    trainer's cost model); the monolithic model trains all N. `requests_ideal_speedup` is that
    for the samples actually drawn (ten requests land in a few slices: this, not the placement,
    moves most from theory); `placement_ideal_speedup` the mean over every training sample
    (theory S*2R/(R+1) exactly when every slice holds N/(S*R))."""
    view = world.datasets.view("d", revision)
    a = view.assignment(sp.shards, sp.slices, sp.training.seed, sp.groupBy == "owner")
    m = (a.shard >= 0) & view.state.active
    n = np.zeros((sp.shards, sp.slices))
    np.add.at(n, (a.shard[m], a.slice[m]), 1)
    tail = np.cumsum(n[:, ::-1], axis=1)[:, ::-1]  # samples trained by a retrain from slice r
    requests = np.asarray(requests)
    per_request = tail[a.shard[requests], a.slice[requests]]
    total = m.sum()
    return {"requests_ideal_speedup": round(float(total / per_request.mean()), 2),
            "placement_ideal_speedup": round(float(total / ((n * tail).sum() / total)), 2)}


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


RESULTS = Path(__file__).parent / "results"


def write_results(name: str, rows: list[dict], facts: dict[str, Any]) -> None:
    """results/<name>.json: the rows and the machine and commit they were measured on."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": facts, "rows": rows}, indent=1))


def run_alone(name: str, run: Callable[[bool], list[dict]], show: Callable[[dict], bool] = lambda r: True,
              argv: list[str] | None = None) -> int:
    """The command line of one benchmark module run by itself: [--quick], then results/<name>.json."""
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.quick)
    write_results(name, rows, machine() | {"quick": args.quick})
    for r in rows:
        if show(r):
            print(r)
    return 0
