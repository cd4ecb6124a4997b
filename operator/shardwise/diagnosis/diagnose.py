"""The diagnosis parts of an Experiment's report, from its predictions. Pure numpy.

Metrics, per-shard figures and the hardest samples are over the Experiment's split; label-issue
candidates are over every active sample (their out-of-shard probabilities). The report's
"probability" of a class is the mean softmax of the shards, also for a voting ensemble (whose
scores are vote counts); the prediction is the ensemble's own (vote or mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shardwise.diagnosis import metrics as mt
from shardwise.diagnosis.label_issues import find_label_issues
from shardwise.diagnosis.predictions import Predictions


def _f(x: float | None) -> float | None:
    """JSON-ready float: None for missing or NaN."""
    return None if x is None or not np.isfinite(x) else float(x)


def split_metrics(preds: Predictions) -> dict[str, Any]:
    """The report's "metrics" of the ensemble over the samples in `preds`."""
    names = preds.class_names
    pred = preds.predicted()
    mean = preds.probs.mean(axis=0, dtype=np.float64)
    conf = mt.confusion(preds.labels, pred, len(names))
    pc = mt.per_class(conf)
    cal = mt.calibration(mean[np.arange(len(preds)), pred], pred == preds.labels)
    return {
        "accuracy": mt.accuracy(preds.labels, pred),
        "macroF1": pc.macro_f1,
        "calibrationError": cal.error,
        "perClass": [{"class": names[j], "precision": float(pc.precision[j]), "recall": float(pc.recall[j]),
                      "f1": float(pc.f1[j]), "support": int(pc.support[j])} for j in range(len(names))],
        "confusion": conf.tolist(),
        "calibration": [{"lo": float(cal.edges[b]), "hi": float(cal.edges[b + 1]), "count": int(cal.count[b]),
                         "confidence": _f(cal.confidence[b]), "accuracy": _f(cal.accuracy[b])}
                        for b in range(len(cal.count))],
    }


def hardest_rows(preds: Predictions, k: int) -> list[dict[str, Any]]:
    names = preds.class_names
    pred = preds.predicted()
    mean = preds.probs.mean(axis=0, dtype=np.float64)
    m = np.arange(len(preds))
    label_prob = mean[m, preds.labels]
    return [{"id": str(preds.ids[i]), "label": names[preds.labels[i]], "predicted": names[pred[i]],
             "confidence": float(mean[i, pred[i]]), "labelProb": float(label_prob[i]), "train": bool(preds.train[i]),
             "shard": int(preds.shard[i])} for i in mt.hardest(label_prob, k)]


def label_issue_rows(preds: Predictions, k: int) -> dict[str, Any]:
    """The report's "labelIssues", over all of `preds` (every active sample)."""
    names = preds.class_names
    li = find_label_issues(preds.labels, preds.out_of_shard())
    # one shard: every training sample was seen by the only model, so its scores are in-sample
    return {"method": li.method, "flagged": li.flagged, "outOfShard": preds.shards > 1,
            "candidates": [{"id": str(preds.ids[i]), "label": names[preds.labels[i]],
                            "suggested": names[li.suggested[i]],
                            "score": float(li.score[i]), "labelProb": float(li.label_prob[i]),
                            "suggestedProb": float(li.suggested_prob[i]), "train": bool(preds.train[i]),
                            "shard": int(preds.shard[i]), "slice": int(preds.slice[i])} for i in li.ranked[:k]]}


def diagnose(preds: Predictions, split: str, top_hardest: int = 50, top_candidates: int = 500) -> dict[str, Any]:
    """Report parts: samples, accuracy, classNames, metrics, perShard, disagreement, hardest, labelIssues.

    preds holds every active sample; `split` (test, train, all) chooses the ones the metrics are
    about. With an empty split, accuracy, metrics and disagreement are None and the lists empty.
    """
    if split not in ("test", "train", "all"):
        raise ValueError(f"split: {split!r} is not one of test, train, all")
    part = preds.split(split)
    out: dict[str, Any] = {"samples": len(part), "accuracy": None, "classNames": list(preds.class_names),
                           "metrics": None, "perShard": [], "disagreement": None, "hardest": []}
    if len(part):
        # a shard is scored only on samples it did not train on (all of them on the test split)
        held_out = part.shard[None, :] != np.arange(part.shards)[:, None]
        acc, agree, n = mt.per_shard(part.probs, part.labels, part.predicted(), held_out)
        out |= {"metrics": split_metrics(part),
                "perShard": [{"shard": k, "samples": int(n[k]), "accuracy": _f(acc[k]),
                              "agreement": _f(agree[k])} for k in range(part.shards)],
                "disagreement": mt.disagreement(part.probs), "hardest": hardest_rows(part, top_hardest)}
        out["accuracy"] = out["metrics"]["accuracy"]
    out["labelIssues"] = label_issue_rows(preds, top_candidates)
    return out
