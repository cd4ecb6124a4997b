"""Compare an Experiment's report with its baseline's: what changed, and on which samples. Pure.

The usual question after a round of label fixes is "did the retrained model get better, and
where?": headline deltas, per-class F1 and recall changes, and the samples whose prediction
flipped between right and wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shardwise.diagnosis.predictions import Predictions

METRICS = ("accuracy", "macroF1", "calibrationError")


def _delta(current: Any, baseline: Any) -> float | None:
    if current is None or baseline is None:
        return None
    return float(current) - float(baseline)


def _per_class(current: dict, baseline: dict) -> list[dict[str, Any]]:
    """One row per class of the current report; classes are matched by name, not code."""
    before = {row["class"]: row for row in baseline.get("metrics", {}).get("perClass", [])}
    out = []
    for row in current.get("metrics", {}).get("perClass", []):
        b = before.get(row["class"])
        out.append({
            "class": row["class"], "f1": row["f1"], "baselineF1": b["f1"] if b else None,
            "deltaF1": _delta(row["f1"], b["f1"]) if b else None,
            "recall": row["recall"], "baselineRecall": b["recall"] if b else None,
        })
    return out


def flips(current: Predictions, baseline: Predictions, split: str) -> dict[str, Any]:
    """Samples of `split` present in both runs (by id) whose prediction went right->wrong or wrong->right.

    "Right" is judged against the CURRENT run's labels for both runs. The current labels are the
    corrected ones, so this asks whether the model's answer improved on the truth as now known.
    Judging each run against its own revision's labels would count a relabelled sample whose
    prediction did not move as wrong->right: that change is the annotator's, not the model's.
    With one yardstick a sample flips only when its prediction changed.

    Each list is ordered by how far the ensemble's probability of the (current) label moved,
    the largest move first, then by id, so the most decisive flips are read first.
    """
    cur, base = current.split(split), baseline.split(split)
    ids_c, ids_b = cur.ids.astype(str), base.ids.astype(str)
    common, ic, ib = np.intersect1d(ids_c, ids_b, assume_unique=True, return_indices=True)
    names_c, names_b = np.array(cur.class_names, dtype=object), np.array(base.class_names, dtype=object)
    label = names_c[cur.labels[ic]]
    pc, pb = cur.ensemble()[ic], base.ensemble()[ib]
    after, before = names_c[pc.argmax(1)], names_b[pb.argmax(1)]
    # the label's probability under the baseline: looked up by class name (a class the baseline
    # did not know has probability 0 there)
    code_b = {n: k for k, n in enumerate(base.class_names)}
    lb = np.array([code_b.get(n, -1) for n in label], dtype=np.int64)
    p_label_b = np.where(lb >= 0, pb[np.arange(len(ic)), np.maximum(lb, 0)], 0.0)
    p_label_c = pc[np.arange(len(ic)), cur.labels[ic]]
    move = np.abs(p_label_c - p_label_b)
    right_b, right_c = before == label, after == label

    def rows(mask: np.ndarray) -> list[dict[str, str]]:
        idx = np.flatnonzero(mask)
        idx = idx[np.lexsort((common[idx], -move[idx]))]
        return [{"id": str(common[i]), "label": str(label[i]), "before": str(before[i]), "after": str(after[i])}
                for i in idx]

    r2w, w2r = rows(right_b & ~right_c), rows(~right_b & right_c)
    # the accuracy change with both runs judged on the same (current) labels: the model's share
    # of the headline delta, which also moves when a label fix corrects the split itself
    model_delta = (len(w2r) - len(r2w)) / common.size if common.size else None
    return {"common": int(common.size), "modelDelta": model_delta, "rightToWrong": r2w, "wrongToRight": w2r}


def compare(current_report: dict, baseline_report: dict, current_preds: Predictions,
            baseline_preds: Predictions) -> dict[str, Any]:
    """The report's `comparison`: current minus baseline, and the samples that flipped.

    Deltas are current minus baseline (a negative calibrationError delta is an improvement).
    Samples are those of the current report's split present in both runs, matched by id
    (forgotten or dropped samples drop out); see `flips` for how right and wrong are judged.
    """
    cur_m, base_m = current_report.get("metrics") or {}, baseline_report.get("metrics") or {}
    return {
        "baseline": baseline_report.get("experiment"),
        "baselineVersion": baseline_report.get("version"),
        "deltas": {k: _delta(cur_m.get(k), base_m.get(k)) for k in METRICS},
        "perClass": _per_class(current_report, baseline_report),
        **flips(current_preds, baseline_preds, current_report.get("split") or "test"),
    }
