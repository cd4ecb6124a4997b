"""Label-issue candidates from out-of-shard probabilities. Pure numpy.

Every training sample is out-of-shard for the S-1 constituent models that did not train on it
(test samples for all S), so `Predictions.out_of_shard()` is a free cross-validated estimate of
each sample's class: a model never fits the label it is asked to judge.

The method here ranks by out-of-shard self-confidence, with confident learning's per-class
threshold (Northcutt et al., 2021): the threshold of class j is the mean out-of-shard probability
of j over the samples labelled j. A sample is flagged when its out-of-shard prediction is another
class and its own label's probability is below its class's threshold; the suggested label is the
out-of-shard prediction; flagged samples are ranked by self-confidence, lowest p(label) first
(score = 1 - p(label)).

benchmarks/label_issues.py (B7) measures it against cleanlab's `find_label_issues` on the same
probabilities (digits, 5 % of the training labels flipped). Both rank the flipped labels well;
what differs is how many samples are flagged: confident learning's pruning (cleanlab's, and
`confident_joint_issues` here, which also asks the suggested class to reach its threshold) keeps
about as many samples as it estimates are mislabeled, so it misses the flipped labels it ranks
just outside that estimate, while flagging every out-of-shard disagreement keeps them in the list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD = "out-of-shard self-confidence (confident-learning class thresholds)"


@dataclass(frozen=True)
class LabelIssues:
    """Flagged samples, most likely mislabeled first, and per-sample columns over all M samples."""

    method: str
    ranked: np.ndarray  # int64 (K,) indices of the flagged samples, ranked
    suggested: np.ndarray  # int64 (M,) the proposed label of each sample
    score: np.ndarray  # float64 (M,) higher = more likely mislabeled
    label_prob: np.ndarray  # float64 (M,) out-of-shard probability of the given label
    suggested_prob: np.ndarray  # float64 (M,)

    @property
    def flagged(self) -> int:
        return len(self.ranked)


def class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(C,) mean probability of class j over the samples labelled j; inf for a class with none
    (no sample can then be confidently in it)."""
    c = probs.shape[1]
    count = np.bincount(labels, minlength=c)
    total = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.inf)


def _rows(method: str, labels: np.ndarray, probs: np.ndarray, suggested: np.ndarray, flagged: np.ndarray,
          score: np.ndarray) -> LabelIssues:
    """Flagged samples ranked by score, highest first (ties in sample order)."""
    m = np.arange(len(labels))
    ranked = flagged[np.argsort(-score[flagged], kind="stable")]
    return LabelIssues(method, ranked.astype(np.int64), suggested.astype(np.int64), score, probs[m, labels],
                       probs[m, suggested])


def _clean(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(labels, np.int64), np.asarray(probs, np.float64)


def _best_other(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    rest = probs.copy()
    rest[np.arange(len(labels)), labels] = -1.0
    return rest.argmax(1)


def out_of_shard_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """labels (M,) codes, probs (M, C) out-of-shard probabilities. The diagnosis's method."""
    labels, probs = _clean(labels, probs)
    t = class_thresholds(labels, probs)
    label_prob = probs[np.arange(len(labels)), labels]
    predicted = probs.argmax(1)
    flagged = np.flatnonzero((predicted != labels) & (label_prob < t[labels]))
    return _rows(METHOD, labels, probs, _best_other(labels, probs), flagged, 1.0 - label_prob)


def confident_joint_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Strict confident learning (for the benchmark): flagged when the label's probability is below
    its class's threshold and another class reaches its own; that class is suggested; ranked by the
    margin p(suggested) - p(label)."""
    labels, probs = _clean(labels, probs)
    m = np.arange(len(labels))
    t = class_thresholds(labels, probs)
    confident = probs >= t[None]
    confident[m, labels] = False
    suggested = np.where(confident.any(1), np.where(confident, probs, -1.0).argmax(1), _best_other(labels, probs))
    flagged = np.flatnonzero((probs[m, labels] < t[labels]) & confident.any(1))
    return _rows("confident learning (confident joint, ranked by margin)", labels, probs, suggested, flagged,
                 probs[m, suggested] - probs[m, labels])


def cleanlab_issues(labels: np.ndarray, probs: np.ndarray, ranked_by: str = "self_confidence") -> LabelIssues:
    """cleanlab 2.x `find_label_issues` on the same probabilities (for the benchmark; cleanlab is a
    test dependency). Suggested label and score as in `out_of_shard_issues`, for comparable rows."""
    from cleanlab.filter import find_label_issues as cl_find

    labels, probs = _clean(labels, probs)
    ranked = np.asarray(cl_find(labels, probs, return_indices_ranked_by=ranked_by), np.int64)
    return _ranked(f"cleanlab.filter.find_label_issues (ranked by {ranked_by})", labels, probs, ranked)


def cleanlab_quality_ranking(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Every sample ranked by cleanlab's `get_label_quality_scores` (self-confidence), nothing pruned
    (for the benchmark: cleanlab's ranking without its filter)."""
    from cleanlab.rank import get_label_quality_scores

    labels, probs = _clean(labels, probs)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    return _ranked("cleanlab.rank.get_label_quality_scores (every sample)", labels, probs,
                   np.argsort(quality, kind="stable"))


def _ranked(method: str, labels: np.ndarray, probs: np.ndarray, ranked: np.ndarray) -> LabelIssues:
    m, best = np.arange(len(labels)), _best_other(labels, probs)
    return LabelIssues(method, ranked, best, 1.0 - probs[m, labels], probs[m, labels], probs[m, best])


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """The method the diagnosis uses (chosen by benchmarks/label_issues.py)."""
    return out_of_shard_issues(labels, probs)


def recall_at(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of the true issues (indices) found in the first k of a ranking."""
    return float(np.isin(truth, ranked[:k]).mean()) if len(truth) else float("nan")


def precision_at(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of the first k of a ranking that are true issues (over k, even if fewer are ranked)."""
    return float(np.isin(ranked[:k], truth).sum() / k) if k else float("nan")
