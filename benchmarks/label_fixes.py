"""B8 label fixes: what accepting the page's suggestions buys the model, and what it costs.

digits (1,797 8x8 images, 80 % training), a `noise` fraction of the TRAINING labels flipped to
another class (seeded; test labels are the true ones, so test accuracy is measured against the
truth). A real S x R ensemble is trained in-process on the noisy labels (the baseline), every
active sample is predicted by every shard, and the label-issue candidates are found from the
out-of-shard probabilities, as an Experiment's report does. Then, for several numbers of fixes,
the first training candidates get their suggested label (what a person who accepts every
suggestion does) and the brain's incremental retrain runs from the baseline's checkpoints. The
oracle row restores every flipped label: it must score what a model trained from scratch on the
clean labels scores (clean_accuracy; bit for bit the same model, by the exactness guarantee).

Columns: fixes (suggestions accepted), right (of those, flipped labels given their true class),
accuracy (test, true labels), delta vs the noisy baseline, retrain cost as a share of training the
baseline (trainer compute).

Run alone: `python benchmarks/label_fixes.py [--quick]` (writes results/label_fixes.json), or as
B8 of `python benchmarks/run.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import NS, World, accuracy, branch, dataset, retrain_for, run_alone, spec, train_all  # noqa: E402
from benchmarks.label_issues import flip_labels  # noqa: E402
from shardwise.diagnosis.label_issues import find_label_issues  # noqa: E402

S, R, EPOCHS, BATCH, HIDDEN = 5, 2, 16, 32, 64  # the model of examples/annotation
NOISE = (0.08, 0.30)
SHARES = (0.25, 0.5, 1.0)  # fixes, as a share of the number of flipped labels


def run(quick: bool, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> list[dict]:
    from shardwise.datasets import DatasetStore
    from shardwise.store.layout import Layout
    from shardwise_trainer.evaluate import predict_all

    rows: list[dict[str, Any]] = []
    sp = spec(S, R, EPOCHS, BATCH, hidden=HIDDEN)
    for noise in NOISE[:1] if quick else NOISE:
        for seed in (0,) if quick else (0, 1):
            world = World.make(dataset("digits"))
            ds = DatasetStore(world.store, Layout(NS))
            clean = ds.view("d")
            labels, flipped = flip_labels(clean.state.labels, clean.train, len(clean.table.class_names), noise, seed)
            noisy = world.base().relabel(flipped, labels[flipped])  # revision 2
            world.write_state(noisy)
            clean_chains, _ = train_all(world, sp, "clean", revision=1)
            clean_acc = accuracy(world, sp, clean_chains, revision=1)
            chains, base_secs = train_all(world, sp, "m", revision=2)
            base_acc = accuracy(world, sp, chains, revision=2)
            preds = predict_all(world.store, sp, [c[-1] for c in chains], ds.view("d", 2))
            li = find_label_issues(preds.labels, preds.out_of_shard())
            ranked = li.ranked[preds.train[li.ranked]]  # only training labels can change the model
            pos = {s: i for i, s in enumerate(clean.table.ids.tolist())}
            rows_of = np.array([pos[s] for s in preds.ids[ranked]], dtype=np.int64)  # dataset rows, ranked
            suggested = li.suggested[ranked]
            common = {"noise": noise, "seed": seed, "flipped": len(flipped), "candidates": len(ranked),
                      "baseline_accuracy": round(base_acc, 4),
                      "clean_accuracy": round(clean_acc, 4)}
            plans = [(f"top {round(sh * len(flipped))}", rows_of[: round(sh * len(flipped))],
                      suggested[: round(sh * len(flipped))]) for sh in SHARES]
            plans.append(("oracle: every flipped label", flipped, clean.state.labels[flipped]))
            for rev, (name, idx, new) in enumerate(plans, start=3):
                state = branch(noisy, rev).relabel(idx, new)  # each plan from the noisy baseline
                world.write_state(state)
                fixed, secs, touched = retrain_for(world, sp, "m", chains, state)
                acc = accuracy(world, sp, fixed, revision=rev)
                right = int((np.isin(idx, flipped) & (new == clean.state.labels[idx])).sum())
                rows.append(common | {"fixes": name, "fixed": len(idx), "right": right,
                                      "accuracy": round(acc, 4), "delta": round(acc - base_acc, 4),
                                      "shards_retrained": len(touched),
                                      "retrain_cost": round(secs / base_secs, 3)})
                log(f"B8 noise {noise:.0%} seed {seed} {name}: {right}/{len(idx)} right, accuracy "
                    f"{base_acc:.3f} -> {acc:.3f}, cost {secs / base_secs:.0%} of the first training")
            world.tmp.cleanup()
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_alone("label_fixes", run, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
