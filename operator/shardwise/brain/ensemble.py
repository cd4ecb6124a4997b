"""Combine the shards' outputs into one prediction. Pure numpy."""

from __future__ import annotations

import numpy as np


def aggregate(probs: np.ndarray, method: str, voting: np.ndarray | list[bool] | None = None) -> np.ndarray:
    """probs: (S, N, C) softmax outputs of S shards -> (N, C) ensemble scores.

    voting: which shards vote (a shard that trained on no sample does not); all by default."""
    if voting is not None:
        voting = np.asarray(voting, dtype=bool)
        if not voting.any():
            raise ValueError("no shard of the model has a training sample: it cannot predict")
        probs = probs[voting]
    if method == "softmax-mean":
        return np.asarray(probs.mean(axis=0))
    if method == "vote":
        s, n, c = probs.shape
        votes = np.zeros((n, c))
        np.add.at(votes, (np.arange(n)[None, :].repeat(s, 0), probs.argmax(axis=2)), 1.0)
        # ties are broken by the mean softmax, so the vote is deterministic
        return np.asarray(votes + probs.mean(axis=0) * 1e-6)
    raise ValueError(f"unknown aggregation {method!r}")
