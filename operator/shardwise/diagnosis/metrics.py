"""Metrics of an ensemble from its predictions. Pure numpy, vectorised.

Conventions (the tests hold them against scikit-learn):
- confusion: rows are the given label, columns the prediction;
- a precision, recall or F1 whose denominator is zero is 0 (scikit-learn's zero_division=0);
- macro F1 averages the classes that occur in the labels or the predictions (scikit-learn's
  default label set), so a class absent from a small split does not count as a 0;
- calibration: 15 equal-width bins of the top-class confidence over [0, 1], each bin (lo, hi]
  with the first one closed at 0 (scikit-learn's calibration_curve binning); the expected
  calibration error is the count-weighted mean of |accuracy - confidence| over the bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CALIBRATION_BINS = 15


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float | None:
    """Fraction right; None for no samples."""
    return float((labels == predicted).mean()) if len(labels) else None


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) int64 counts: [given label, prediction]."""
    flat = np.asarray(labels, np.int64) * classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


@dataclass(frozen=True)
class PerClass:
    precision: np.ndarray  # float64 (C,)
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # int64 (C,): samples with that given label
    present: np.ndarray  # bool (C,): the class occurs as a label or a prediction

    @property
    def macro_f1(self) -> float | None:
        """Mean F1 of the classes that occur as a label or a prediction."""
        return float(self.f1[self.present].mean()) if self.present.any() else None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def per_class(conf: np.ndarray) -> PerClass:
    """Precision, recall, F1 and support of every class, from a confusion matrix."""
    tp = np.diag(conf).astype(np.float64)
    support, predicted = conf.sum(axis=1), conf.sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)  # = 2PR / (P + R), and 0 when tp is 0
    return PerClass(precision, recall, f1, support.astype(np.int64), (support + predicted) > 0)


@dataclass(frozen=True)
class Calibration:
    edges: np.ndarray  # float64 (B + 1,)
    count: np.ndarray  # int64 (B,)
    confidence: np.ndarray  # float64 (B,) mean top-class confidence of the bin; NaN when empty
    accuracy: np.ndarray  # float64 (B,) fraction right in the bin; NaN when empty

    @property
    def error(self) -> float | None:
        """Expected calibration error; None for no samples."""
        n = self.count.sum()
        if n == 0:
            return None
        full = self.count > 0
        return float((self.count[full] * np.abs(self.accuracy[full] - self.confidence[full])).sum() / n)


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # (lo, hi], first bin from 0
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    right = np.bincount(which, weights=np.asarray(correct, np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Calibration(edges, count.astype(np.int64), np.where(count > 0, conf_sum / count, np.nan),
                           np.where(count > 0, right / count, np.nan))


def shard_predictions(probs: np.ndarray) -> np.ndarray:
    """(S, M) argmax of each constituent model."""
    return probs.argmax(axis=2)


def per_shard(probs: np.ndarray, labels: np.ndarray, ensemble_pred: np.ndarray,
              scored: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracy, agreement, samples) of each shard's model: (S,) fractions of the samples it is
    scored on where its argmax equals the given label, and the ensemble's prediction; and how many
    samples that is. `scored` (S, M) bool chooses them (default: all); the diagnosis passes the
    samples a shard did not train on. NaN where a shard has none."""
    pred = shard_predictions(probs)
    mask = np.ones(pred.shape, dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = ((pred == labels[None]) & mask).sum(axis=1) / n
        agree = ((pred == ensemble_pred[None]) & mask).sum(axis=1) / n
    return acc, agree, n


def disagreement(probs: np.ndarray) -> float | None:
    """Fraction of samples on which the shards' argmaxes are not all the same."""
    pred = shard_predictions(probs)
    if pred.shape[1] == 0:
        return None
    return float((pred != pred[:1]).any(axis=0).mean())


def hardest(label_prob: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k samples with the lowest probability of their given label, lowest first
    (ties in sample order)."""
    return np.argsort(label_prob, kind="stable")[:k]
