"""Shardwise benchmarks. One command: `python benchmarks/run.py` (add --quick for a smoke run).

Writes benchmarks/results/<name>.json and benchmarks/results/RESULTS.md. Every figure is
a ratio against a baseline measured in the same run; times are trainer compute seconds
(in-process, real torch) unless a column says wall.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (  # noqa: E402
    RESULTS,
    World,
    accuracy,
    balanced_placement,
    branch,
    dataset,
    ideal_speedups,
    machine,
    retrain_for,
    spec,
    spread,
    timed,
    train_all,
    write_results,
)

CONFIGS = [(1, 1), (4, 4), (8, 8), (16, 4)]
# epochs and batch per dataset: enough to learn, small enough for 2 CPU cores
TRAINING = {"digits": (16, 32), "synthetic": (10, 256)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- B1: unlearning speedup ---------------------------------------------------------------------
def b1(quick: bool) -> list[dict[str, Any]]:
    """Speedup of forgetting one sample (hash placement), and the accuracy of the hash placement
    against the pre-change balanced placement trained in the same run (benchmarks/balanced.py)."""
    rows = []
    for name in ("digits", "synthetic"):
        table = dataset(name, 20_000 if quick else 100_000)
        world = World.make(table)
        epochs, batch = TRAINING[name]
        mono_sp = spec(1, 1, epochs, batch)
        mono_chains, mono_secs = train_all(world, mono_sp, "mono")
        mono_acc = accuracy(world, mono_sp, mono_chains)
        base = world.base()
        train_idx = np.flatnonzero(world.datasets.view("d").train)
        rng = np.random.default_rng(1)
        requests = rng.choice(train_idx, size=3 if quick else 10, replace=False)
        for S, R in CONFIGS:
            sp = spec(S, R, epochs, batch)
            with balanced_placement():  # the baseline: the same (S, R) at revision 1, placed the pre-change way
                bal_chains, _ = train_all(world, sp, f"b{S}x{R}")
                bal_acc = accuracy(world, sp, bal_chains)
            chains, full_secs = train_all(world, sp, f"m{S}x{R}")
            acc = accuracy(world, sp, chains)
            times = []
            for j, i in enumerate(requests):  # each request measured from the same trained model
                # a forget simulated as a drop (see harness.branch)
                state = branch(base, 100 + len(rows) * 100 + j).drop([i])
                world.write_state(state)
                _, secs, _ = retrain_for(world, sp, f"m{S}x{R}", chains, state)
                times.append(secs)
            mean = float(np.mean(times))
            theory = S * 2 * R / (R + 1)
            measured = mono_secs / mean
            row = {"dataset": name, "samples": len(table), "shards": S, "slices": R, "requests": len(times),
                   "mean_forget_seconds": round(mean, 4), "monolithic_retrain_seconds": round(mono_secs, 4),
                   "ensemble_retrain_seconds": round(full_secs, 4),
                   "measured_speedup": round(measured, 2), "speedup_vs_ensemble": round(full_secs / mean, 2),
                   "theoretical_speedup": round(theory, 2), "measured_over_theory": round(measured / theory, 3),
                   **ideal_speedups(world, sp, requests),
                   "accuracy_hash": round(acc, 4), "accuracy_balanced": round(bal_acc, 4),
                   "accuracy_difference_points": round(100 * (acc - bal_acc), 2),
                   "monolithic_accuracy": round(mono_acc, 4)} | spread(world, sp)
            log(f"B1 {name} S={S} R={R}: speedup {measured:.2f} (theory {theory:.2f}), acc {acc:.4f} "
                f"(balanced placement {bal_acc:.4f}: {100 * (acc - bal_acc):+.2f} points)")
            rows.append(row)
        world.tmp.cleanup()
    return rows


# -- B2 batching and B3 relabelling --------------------------------------------------------------
def b2_b3(quick: bool) -> tuple[list[dict], list[dict]]:
    S, R = 8, 8
    table = dataset("synthetic", 20_000 if quick else 100_000)
    world = World.make(table)
    epochs, batch = TRAINING["synthetic"]
    sp = spec(S, R, epochs, batch)
    chains, full_secs = train_all(world, sp, "b")
    base = world.base()
    train_idx = np.flatnonzero(world.datasets.view("d").train)
    rng = np.random.default_rng(2)
    rev = [1000]

    def next_state(prev, idx=None, relabel=None):
        """The revision after `prev` (a sandbox branch, see harness.branch): `idx` forgotten
        (simulated as a drop), or the labels of `relabel` changed."""
        rev[0] += 1
        prev = branch(prev, rev[0])
        if relabel is not None:
            st = prev.relabel(relabel, (prev.labels[relabel] + 1) % 10)
        else:
            st = prev.drop(idx)
        world.write_state(st)
        return st

    batching, relabel = [], []
    for k in ((1, 8) if quick else (1, 8, 64)):
        reqs = rng.choice(train_idx, size=k, replace=False)
        _, coalesced, plans = retrain_for(world, sp, "b", chains, next_state(base, reqs))
        one_by_one, cur, st = 0.0, chains, base
        for i in reqs:
            st = next_state(st, [i])
            cur, secs, _ = retrain_for(world, sp, "b", cur, st)
            one_by_one += secs
        affected = len({int(x) for x in world.datasets.view("d").assignment(S, R, 0, False).shard[reqs]})
        batching.append({"k": k, "coalesced_seconds": round(coalesced, 3), "sequential_seconds": round(one_by_one, 3),
                         "ratio_sequential_over_coalesced": round(one_by_one / coalesced, 2),
                         "affected_shards": affected, "retrain_jobs_coalesced": len(plans),
                         "at_most_one_retrain_per_affected_shard": len(plans) <= affected})
        log(f"B2 k={k}: coalesced {coalesced:.2f}s vs one by one {one_by_one:.2f}s, "
            f"{len(plans)} jobs/{affected} shards")
    for k in (1, 10):
        fixes = rng.choice(train_idx, size=k, replace=False)
        _, inc, plans = retrain_for(world, sp, "b", chains, next_state(base, relabel=fixes))
        relabel.append({"k": k, "incremental_seconds": round(inc, 3), "full_retrain_seconds": round(full_secs, 3),
                        "speedup": round(full_secs / inc, 2), "retrained_shards": len(plans)})
        log(f"B3 k={k}: incremental {inc:.2f}s vs full {full_secs:.2f}s")
    world.tmp.cleanup()
    return batching, relabel


# -- B4 end-to-end overhead of the local body ---------------------------------------------------
def b4(quick: bool) -> list[dict]:
    """Request to new version published, through the local body (trainer processes), minus trainer compute."""
    import tempfile

    from shardwise.api import ForgetRequest, ShardedModel
    from shardwise.datasets import DatasetStore
    from shardwise.local.registry import Registry
    from shardwise.local.runner import LocalRunner
    from shardwise.store.layout import Layout
    from shardwise.store.local import LocalStore

    table = dataset("synthetic", 20_000 if quick else 100_000)
    epochs, batch = TRAINING["synthetic"]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        store = LocalStore(d)
        ds = {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"source": {"builtin": "digits"}}}
        from shardwise.api import Dataset
        from shardwise.api.dataset import DatasetSpec
        # the synthetic samples are ingested directly; the resource's source is then never read
        DatasetStore(store, Layout("default")).ingest("d", DatasetSpec(source={"builtin": "digits"}), table)
        reg = Registry(store, "default")
        reg.apply(Dataset.model_validate(ds))
        reg.apply(ShardedModel.model_validate({"kind": "ShardedModel", "metadata": {"name": "m"},
                                               "spec": spec(8, 8, epochs, batch).model_dump(mode="json")}))
        runner = LocalRunner(store, "default", parallel=2, log=lambda m: None)
        runner.run()
        view = runner.view("d")
        rng = np.random.default_rng(3)
        ids = rng.choice(view.table.ids[view.train], size=2 if quick else 5, replace=False)
        for j, sample in enumerate(ids):
            reg.apply(ForgetRequest.model_validate({"kind": "ForgetRequest", "metadata": {"name": f"f{j}"},
                                                    "spec": {"datasetRef": "d", "sampleIds": [str(sample)]}}))
            t0 = time.perf_counter()
            runner.run()
            wall = time.perf_counter() - t0
            m = reg.require(ShardedModel, "m")
            L = Layout("default")
            doc = store.get_json(L.version("m", m.metadata.uid, m.status.publishedVersion))
            compute = sum(x["computeSeconds"] for x in doc["jobs"])
            rows.append({"request": j, "wall_seconds": round(wall, 3), "trainer_compute_seconds": round(compute, 3),
                         "overhead_seconds": round(wall - compute, 3),
                         "overhead_share": round((wall - compute) / wall, 3)})
            log(f"B4 forget {j}: wall {wall:.2f}s, compute {compute:.2f}s")
    return rows


# -- B5 storage ------------------------------------------------------------------------------------
def b5(quick: bool) -> list[dict]:
    import shutil
    import tempfile

    from shardwise.store.local import LocalStore
    from shardwise.store.s3 import S3Store

    rows = []
    data = np.random.default_rng(0).bytes(8 * 1024 * 1024)  # an 8 MiB checkpoint
    reps = 3 if quick else 10
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src.bin"
        src.write_bytes(data)

        def raw():
            shutil.copyfile(src, Path(d) / "copy.bin")
            return (Path(d) / "copy.bin").read_bytes()

        (_, raw_s) = timed(lambda: [raw() for _ in range(reps)])
        stores = {"LocalStore": LocalStore(Path(d) / "store")}
        from tests.fixtures_s3 import start_seaweedfs

        server = start_seaweedfs(Path(d))
        try:
            s3 = S3Store(server.client(), "bench")
            s3.ensure_bucket()
            stores["S3Store (SeaweedFS)"] = s3
            for name, st in stores.items():
                (_, secs) = timed(lambda: [st.get_verified(f"c/{i}", st.put_verified(f"c/{i}", data))
                                           for i in range(reps)])
                rows.append({"store": name, "bytes": len(data), "repetitions": reps,
                             "save_load_seconds": round(secs / reps, 4), "raw_copy_seconds": round(raw_s / reps, 4),
                             "ratio_vs_raw_copy": round(secs / raw_s, 2)})
                log(f"B5 {name}: {secs / reps * 1000:.1f} ms per save+load, {secs / raw_s:.1f}x a raw copy")
        finally:
            server.stop()
    return rows


# -- B6 the brain at scale ------------------------------------------------------------------------
def b6(quick: bool) -> list[dict]:
    """The brain's cost per planning pass at scale, and (separately) the placement words' cost.

    The words (`sample_words`: two keyed hashes a sample) are computed once, at ingest, and
    stored with the payload; the brain places, fingerprints and plans from them on every
    pass. So words_seconds is an ingest cost, timed apart, and the peak memory is the
    brain's only (the words, like the ids, are inputs already in memory)."""
    from shardwise.brain.assignment import assign, sample_words
    from shardwise.brain.lineage import CheckpointRef, plan_shard, slice_fingerprints
    from shardwise.brain.revision import DatasetState

    rows = []
    for n in ((10**5, 10**6) if quick else (10**6, 10**7)):
        S, R = 16, 8
        ids = np.char.add("s", np.arange(n).astype(str))
        owners = np.full(n, "", dtype="<U1")  # no owner keys: each sample its own group
        (id_words, _), t_words = timed(sample_words, 0, ids, owners)
        del ids
        train = np.ones(n, dtype=bool)
        tracemalloc.start()
        a, t_assign = timed(assign, id_words, train, S, R, 0)
        base = DatasetState.initial(np.zeros(n, np.int64))
        fps, t_fp = timed(slice_fingerprints, a, base.at(1), id_words)
        # 1,000 samples forgotten, simulated as a drop (see harness.branch): the planner reads
        # a forgotten row and a dropped row alike (inactive), and a forget's row removal is
        # the dataset store's cost, not the brain's
        state2 = base.drop(np.arange(0, n, max(1, n // 1000))).at(2)
        fps2, t_fp2 = timed(slice_fingerprints, a, state2, id_words)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        chains = [tuple(CheckpointRef(k, r, "k", "s", "w", tuple(fps[k][: r + 1]), (1,) * (r + 1)) for r in range(R))
                  for k in range(S)]
        _, t_plan = timed(lambda: [plan_shard(k, chains[k], fps2[k]) for k in range(S)])
        rows.append({"samples": n, "shards": S, "slices": R, "words_seconds": round(t_words, 3),
                     "assign_seconds": round(t_assign, 3),
                     "fingerprint_seconds": round(t_fp, 3), "plan_seconds": round(t_fp2 + t_plan, 3),
                     "peak_memory_mib": round(peak / 2**20, 1), "bytes_per_sample": round(peak / n, 1)})
        log(f"B6 n={n}: words {t_words:.2f}s (ingest), assign {t_assign:.2f}s, fingerprints {t_fp:.2f}s, "
            f"plan {t_fp2 + t_plan:.2f}s, peak {peak / 2**20:.0f} MiB")
    return rows


# -- report ----------------------------------------------------------------------------------------
def table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


SECTIONS = [
    ("unlearn", "B1 unlearning speedup (one random sample; vs retraining the monolithic model), and the accuracy "
     "of the hash placement vs the pre-change balanced placement trained in the same run (difference in points; "
     "shard and slice sizes: training samples under the hash placement; *_ideal_speedup: the cost model on this "
     "placement, for the requests drawn and for a random sample, see harness.ideal_speedups)",
     ["dataset", "shards", "slices", "mean_forget_seconds", "measured_speedup", "theoretical_speedup",
      "measured_over_theory", "requests_ideal_speedup", "placement_ideal_speedup", "speedup_vs_ensemble",
      "accuracy_hash", "accuracy_balanced", "accuracy_difference_points", "monolithic_accuracy",
      "shard_min", "shard_max", "slice_min", "slice_max"]),
    ("batching", "B2 batching: k requests together, coalesced vs one after another (8 x 8, synthetic)", None),
    ("relabel", "B3 relabelling: k label fixes, incremental vs full retrain (8 x 8, synthetic)", None),
    ("overhead", "B4 end-to-end time-to-forget through the local body vs trainer compute (8 x 8, synthetic)", None),
    ("operator_rate", "B4 operator: ForgetRequests handled per second by the kopf handlers against kmock "
     "(no model on the Dataset: the operator's own cost)", None),
    ("storage", "B5 storage: checkpoint save + verified load vs a raw file copy of the same bytes", None),
    ("brain", "B6 the brain at scale (vectorised numpy; words_seconds is the ingest's keyed hashing, "
     "not part of a planning pass)", None),
    ("label_issues", "B7 label issues: flipped training labels found in the top 2k candidates (digits, 5 % flipped; "
     "benchmarks/label_issues.py)", None),
    ("label_fixes", "B8 label fixes: test accuracy (true labels) after accepting the first suggestions, and the "
     "retrain's cost (digits, 5 x 2; benchmarks/label_fixes.py)",
     ["noise", "seed", "flipped", "clean_accuracy", "baseline_accuracy",
      "fixes", "right", "accuracy", "delta", "shards_retrained",
      "retrain_cost"]),
]


def render() -> list[str]:
    out = []
    for name, title, cols in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        rows, m = doc["rows"], doc["machine"]
        out.append(f"## {title}\n\n_{m['cpus']} CPUs, torch {m['torch']}, CUDA {m['cuda']}, commit {m['commit']}, "
                   f"{m['date']}{' (quick smoke run)' if m.get('quick') else ''}_\n\n"
                   + table(rows, cols or list(rows[0])) + "\n")
        if name == "unlearn":
            eight = [r for r in rows if r["dataset"] == "synthetic" and (r["shards"], r["slices"]) == (8, 8)]
            met = bool(eight) and eight[0]["measured_over_theory"] >= 0.8
            note = ""
            if eight and "requests_ideal_speedup" in eight[0]:
                r = eight[0]
                note = (f" ({r['measured_over_theory']:.2f} of theory; "
                        f"{r['measured_speedup'] / r['requests_ideal_speedup']:.2f} of the cost model's "
                        f"{r['requests_ideal_speedup']} for the {r['requests']} samples drawn)")
            out.append(f"Target ≥ 0.8 of theory at (8, 8) on the synthetic set: **{'met' if met else 'MISSED'}**"
                       f"{note}.\n")
            diffs = [r["accuracy_difference_points"] for r in rows if "accuracy_difference_points" in r]
            if diffs:
                ok = min(diffs) >= -1.0
                out.append(f"Target accuracy of the hash placement within 1 point of the balanced placement (every "
                           f"row): **{'met' if ok else 'MISSED'}** (worst {min(diffs):+.2f} points).\n")
        if name == "overhead":
            share = max(r["overhead_share"] for r in rows)
            out.append(f"Target overhead ≤ 10 %: **{'met' if share <= 0.10 else 'MISSED'}** (worst {share:.0%}).\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not for the README")
    p.add_argument("--only", default="B1,B2,B3,B4,B5,B6,B7,B8")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    RESULTS.mkdir(exist_ok=True)
    facts = machine() | {"quick": args.quick}
    md = ["# Benchmark results\n\nMade by `python benchmarks/run.py`; each section names its machine and commit.\n"]

    def save(name: str, rows: list[dict]) -> None:
        write_results(name, rows, facts)

    from benchmarks import label_fixes, label_issues

    runs = {"B1": ("unlearn", b1), "B4": ("overhead", b4), "B5": ("storage", b5), "B6": ("brain", b6),
            "B7": ("label_issues", label_issues.run), "B8": ("label_fixes", label_fixes.run)}
    for key, (name, fn) in runs.items():
        if key in only:
            save(name, fn(args.quick))
    if "B4" in only:
        from benchmarks import operator_rate

        save("operator_rate", operator_rate.run(args.quick))
    if "B2" in only or "B3" in only:
        batching, relabel = b2_b3(args.quick)
        save("batching", batching)
        save("relabel", relabel)
    md += render()
    (RESULTS / "RESULTS.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
