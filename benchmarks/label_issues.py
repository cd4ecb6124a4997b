"""B7 label issues: how many deliberately flipped labels each method finds in its top 2k.

digits (1,797 8x8 images, 80 % training), 5 % of the TRAINING labels flipped to another class
(seeded), a real S x R ensemble trained in-process by the trainer, then every active sample
predicted by every shard (`predict_all`, as the Experiment's evaluation does). Both methods get
the SAME out-of-shard probabilities (`Predictions.out_of_shard()`); the candidates are ranked
over all active samples (training and test), and only flipped training labels count as hits.

k = number of flipped labels. recall@2k: fraction of the flipped labels in the first 2k
candidates; precision@k: fraction of the first k candidates that are flipped labels.

Run alone: `python benchmarks/label_issues.py [--quick]` (writes results/label_issues.json), or
as B7 of `python benchmarks/run.py`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import NS, World, dataset, run_alone, spec, train_all  # noqa: E402
from shardwise.diagnosis.label_issues import (  # noqa: E402
    LabelIssues,
    cleanlab_issues,
    cleanlab_quality_ranking,
    confident_joint_issues,
    find_label_issues,
    precision_at,
    recall_at,
)

FLIP = 0.05
# (shards, slices); epochs and batch as B1 uses for digits
CONFIGS = [(4, 2), (5, 2), (8, 2)]
EPOCHS, BATCH = 16, 32


def flip_labels(labels: np.ndarray, train: np.ndarray, classes: int, fraction: float, seed: int):
    """(new labels, indices flipped): `fraction` of the training samples get another class, uniformly."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(np.flatnonzero(train), round(fraction * train.sum()), replace=False))
    out = labels.copy()
    out[idx] = (labels[idx] + rng.integers(1, classes, idx.size)) % classes
    return out, idx


def methods() -> dict[str, Callable[[np.ndarray, np.ndarray], LabelIssues]]:
    """The diagnosis's method, cleanlab's find_label_issues (two rankings), and for context two
    others: strict confident learning, and cleanlab's quality scores with nothing pruned."""
    return {"shardwise": find_label_issues,
            "cleanlab find_label_issues": lambda y, p: cleanlab_issues(y, p, "self_confidence"),
            "cleanlab find_label_issues (normalized_margin)": lambda y, p: cleanlab_issues(y, p, "normalized_margin"),
            "confident joint (strict CL)": confident_joint_issues,
            "cleanlab quality scores, unpruned": cleanlab_quality_ranking}


def run(quick: bool, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> list[dict]:
    from shardwise.datasets import DatasetStore
    from shardwise.store.layout import Layout
    from shardwise_trainer.evaluate import predict_all

    rows: list[dict[str, Any]] = []
    seeds = (0,) if quick else (0, 1, 2)
    for S, R in (CONFIGS[1:2] if quick else CONFIGS):
        for seed in seeds:
            world = World.make(dataset("digits"))
            ds = DatasetStore(world.store, Layout(NS))
            v = ds.view("d")
            labels, flipped = flip_labels(v.state.labels, v.train, len(v.table.class_names), FLIP, seed)
            world.write_state(world.base().relabel(flipped, labels[flipped]))  # revision 2
            sp = spec(S, R, EPOCHS, BATCH)
            chains, secs = train_all(world, sp, f"m{S}x{R}", revision=2)
            view = ds.view("d", 2)
            preds = predict_all(world.store, sp, [c[-1] for c in chains], view)
            pos = {s: i for i, s in enumerate(preds.ids.tolist())}
            truth = np.array([pos[s] for s in view.table.ids[flipped]])
            test = preds.split("test")
            acc = float((test.predicted() == test.labels).mean())
            oos = preds.out_of_shard()
            k = len(truth)
            for name, fn in methods().items():
                t0 = time.perf_counter()
                li = fn(preds.labels, oos)
                took = time.perf_counter() - t0
                row = {"shards": S, "slices": R, "seed": seed, "samples": len(preds), "flipped": k,
                       "method": name, "flagged": li.flagged,
                       "recall_at_2k": round(recall_at(li.ranked, truth, 2 * k), 4),
                       "precision_at_k": round(precision_at(li.ranked, truth, k), 4),
                       "test_accuracy": round(acc, 4), "train_seconds": round(secs, 2),
                       "method_seconds": round(took, 4)}
                rows.append(row)
                log(f"B7 S={S} R={R} seed {seed} {name}: recall@2k {row['recall_at_2k']:.3f}, "
                    f"precision@k {row['precision_at_k']:.3f}, flagged {li.flagged} (k={k}, test acc {acc:.3f})")
            world.tmp.cleanup()
    return rows + summary(rows)


def summary(rows: list[dict]) -> list[dict]:
    """Mean over seeds and configurations, one row per method."""
    out = []
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        out.append({"shards": "mean", "slices": "", "seed": f"{len(mine)} runs", "method": name,
                    "flagged": round(float(np.mean([r["flagged"] for r in mine])), 1),
                    "recall_at_2k": round(float(np.mean([r["recall_at_2k"] for r in mine])), 4),
                    "precision_at_k": round(float(np.mean([r["precision_at_k"] for r in mine])), 4),
                    "test_accuracy": round(float(np.mean([r["test_accuracy"] for r in mine])), 4)})
    return out


def main(argv: list[str] | None = None) -> int:
    return run_alone("label_issues", run, lambda r: r["shards"] == "mean", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
