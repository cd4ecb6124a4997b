"""compare(): baseline deltas and the samples that flipped, on hand-made predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from shardwise.diagnosis.compare import compare, flips
from shardwise.diagnosis.predictions import Predictions

CLASSES = ("a", "b", "c")


def preds(rows: list[tuple[str, str, str, bool]], classes: tuple[str, ...] = CLASSES,
          confidence: dict[str, float] | None = None) -> Predictions:
    """rows: (id, given label, predicted label, in train). Both shards predict the same; the
    predicted class gets `confidence[id]` (default 0.8), the rest is spread evenly."""
    n, c = len(rows), len(classes)
    probs = np.zeros((2, n, c), dtype=np.float32)
    for i, (sid, _, pred, _) in enumerate(rows):
        p = (confidence or {}).get(sid, 0.8)
        probs[:, i, :] = (1 - p) / (c - 1)
        probs[:, i, classes.index(pred)] = p
    train = np.array([r[3] for r in rows])
    return Predictions(
        ids=np.array([r[0] for r in rows]), labels=np.array([classes.index(r[1]) for r in rows], dtype=np.int64),
        train=train, shard=np.where(train, 0, -1).astype(np.int32), slice=np.where(train, 0, -1).astype(np.int32),
        probs=probs, class_names=classes)


def report(name: str, version: int, accuracy: float | None, f1: dict[str, float], recall: dict[str, float],
           ece: float | None = 0.1, split: str = "test") -> dict:
    return {"experiment": name, "version": version, "split": split, "accuracy": accuracy,
            "metrics": {"accuracy": accuracy, "macroF1": float(np.mean(list(f1.values()))), "calibrationError": ece,
                        "perClass": [{"class": k, "precision": 0.5, "recall": recall[k], "f1": f1[k], "support": 1}
                                     for k in f1]}}


# baseline: t3 was labelled "a" then; the fix made it "c". t6 was forgotten since, t5 is new.
BASELINE = [("t1", "a", "a", False), ("t2", "b", "a", False), ("t3", "a", "c", False), ("t4", "c", "c", False),
            ("t6", "a", "b", False), ("x1", "a", "a", True)]
CURRENT = [("t1", "a", "b", False), ("t2", "b", "b", False), ("t3", "c", "c", False), ("t4", "c", "c", False),
           ("t5", "b", "a", False), ("x1", "a", "b", True)]


def test_flips_are_judged_against_the_current_labels_over_the_common_split_samples():
    out = flips(preds(CURRENT), preds(BASELINE), "test")
    assert out["common"] == 4  # t1..t4: t5 is new, t6 is gone, x1 is a training sample
    assert out["rightToWrong"] == [{"id": "t1", "label": "a", "before": "a", "after": "b"}]
    # t3: the prediction did not move, only its label did, so it is no flip (its own-label verdict was wrong->right)
    assert out["wrongToRight"] == [{"id": "t2", "label": "b", "before": "a", "after": "b"}]
    assert out["modelDelta"] == 0.0  # one each way: on the same labels the model did not get better


def test_the_train_split_compares_the_training_samples():
    out = flips(preds(CURRENT), preds(BASELINE), "train")
    assert out["common"] == 1
    assert out["rightToWrong"] == [{"id": "x1", "label": "a", "before": "a", "after": "b"}] \
        and out["wrongToRight"] == []


def test_flips_put_the_largest_move_of_the_label_probability_first_then_ids():
    base = [("p", "a", "a", False), ("q", "a", "a", False), ("r", "a", "a", False)]
    cur = [("p", "a", "b", False), ("q", "a", "b", False), ("r", "a", "b", False)]
    # label "a" probability 0.8 before; after: p 0.3, q 0.05, r 0.05 (q and r tie, so by id)
    out = flips(preds(cur, confidence={"p": 0.4, "q": 0.9, "r": 0.9}), preds(base), "test")
    assert [r["id"] for r in out["rightToWrong"]] == ["q", "r", "p"]


def test_classes_are_matched_by_name_when_the_baseline_orders_them_differently():
    out = flips(preds(CURRENT), preds(BASELINE, classes=("c", "b", "a")), "test")
    assert out["rightToWrong"] == [{"id": "t1", "label": "a", "before": "a", "after": "b"}]
    assert [r["id"] for r in out["wrongToRight"]] == ["t2"]


def test_compare_gives_current_minus_baseline_and_per_class_changes():
    cur = report("after", 2, 0.75, {"a": 0.5, "b": 1.0, "c": 0.8}, {"a": 0.5, "b": 1.0, "c": 1.0}, ece=0.05)
    base = report("before", 1, 0.5, {"a": 0.6, "b": 0.0, "c": 0.8}, {"a": 1.0, "b": 0.0, "c": 0.5}, ece=None)
    out = compare(cur, base, preds(CURRENT), preds(BASELINE))
    assert out["baseline"] == "before" and out["baselineVersion"] == 1
    assert out["deltas"]["accuracy"] == pytest.approx(0.25)
    assert out["deltas"]["macroF1"] == pytest.approx((2.3 - 1.4) / 3)
    assert out["deltas"]["calibrationError"] is None  # unknown on one side: no delta rather than a made-up one
    rows = {r["class"]: r for r in out["perClass"]}
    assert rows["b"] == {"class": "b", "f1": 1.0, "baselineF1": 0.0, "deltaF1": 1.0, "recall": 1.0,
                         "baselineRecall": 0.0}
    assert rows["a"]["deltaF1"] == pytest.approx(-0.1) and rows["c"]["deltaF1"] == pytest.approx(0.0)
    assert out["common"] == 4 and [r["id"] for r in out["rightToWrong"]] == ["t1"]


def test_a_class_the_baseline_lacks_has_no_baseline_figures():
    cur = report("after", 2, 1.0, {"a": 1.0, "z": 1.0}, {"a": 1.0, "z": 1.0})
    base = report("before", 1, 1.0, {"a": 1.0}, {"a": 1.0})
    p = preds([("t1", "a", "a", False)])
    z = next(r for r in compare(cur, base, p, p)["perClass"] if r["class"] == "z")
    assert z["baselineF1"] is None and z["deltaF1"] is None and z["baselineRecall"] is None


def test_no_common_samples_gives_empty_lists():
    out = flips(preds([("n1", "a", "a", False)]), preds([("o1", "a", "b", False)]), "test")
    assert out == {"common": 0, "modelDelta": None, "rightToWrong": [], "wrongToRight": []}
