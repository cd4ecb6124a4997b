"""Predictions: what an Experiment's test run records about every active sample.

The evaluation Job writes one `predictions.npz` per Experiment next to its report; every
diagnosis (metrics, label-issue candidates, baseline comparison, the annotation page) is
computed from it without touching the model again.

Each sample is out-of-shard for the S-1 constituent models that did not train on it (all S
for a test sample), so `out_of_shard()` is a free S-fold cross-validation of the training set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from shardwise.brain.ensemble import aggregate


@dataclass(frozen=True)
class Predictions:
    """Aligned arrays over the M active samples of one Dataset revision.

    ids:    str (M,)             sample ids
    labels: int64 (M,)           labels at the tested revision (codes into class_names)
    train:  bool (M,)            in the training split
    shard:  int32 (M,)           the shard that trained on the sample; -1 for test samples
    slice:  int32 (M,)           its slice; -1 for test samples
    probs:  float32 (S, M, C)    softmax output of each constituent model
    class_names: label text of each code
    aggregation: how the ensemble combines shards (the model's spec.aggregation)
    voting: bool (S,)            shards that vote (a shard with no training sample does not); all when None
    """

    ids: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    shard: np.ndarray
    slice: np.ndarray
    probs: np.ndarray
    class_names: tuple[str, ...]
    aggregation: str = "softmax-mean"
    voting: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.voting is None:
            object.__setattr__(self, "voting", np.ones(self.probs.shape[0], dtype=bool))
        m = len(self.ids)
        for name in ("labels", "train", "shard", "slice"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"predictions: {name} has {len(getattr(self, name))} rows, ids has {m}")
        if self.probs.ndim != 3 or self.probs.shape[1] != m or self.probs.shape[2] != len(self.class_names):
            raise ValueError(f"predictions: probs has shape {self.probs.shape}, expected (S, {m}, "
                             f"{len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shards(self) -> int:
        return int(self.probs.shape[0])

    def ensemble(self) -> np.ndarray:
        """(M, C) scores of the published ensemble: what the model predicts."""
        return aggregate(self.probs, self.aggregation, self.voting)

    def predicted(self) -> np.ndarray:
        return self.ensemble().argmax(1)

    def out_of_shard(self) -> np.ndarray:
        """(M, C) mean probabilities of the voting models that did not train on each sample."""
        vote = np.asarray(self.voting, dtype=bool)
        s = int(vote.sum())
        total = self.probs[vote].sum(axis=0, dtype=np.float64)
        own = np.zeros_like(total)
        trained = self.shard >= 0  # a sample's own shard trained on it, so it votes
        own[trained] = self.probs[self.shard[trained], np.flatnonzero(trained)]
        count = np.where(trained, s - 1, s).astype(np.float64)
        if s == 1:  # one shard: no model is out-of-shard for a training sample; fall back to the model
            return total.astype(np.float32)
        return ((total - own) / count[:, None]).astype(np.float32)

    def subset(self, mask: np.ndarray) -> Predictions:
        return Predictions(self.ids[mask], self.labels[mask], self.train[mask], self.shard[mask], self.slice[mask],
                           self.probs[:, mask], self.class_names, self.aggregation, self.voting)

    def split(self, name: str) -> Predictions:
        """The samples of one split: test, train or all."""
        return self.subset({"test": ~self.train, "train": self.train, "all": np.ones_like(self.train)}[name])

    # -- serialisation ------------------------------------------------------------------
    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, ids=self.ids.astype(str), labels=self.labels.astype(np.int64),
                            train=self.train.astype(bool), shard=self.shard.astype(np.int32),
                            slice=self.slice.astype(np.int32), probs=self.probs.astype(np.float32),
                            class_names=np.array(self.class_names, dtype=str),
                            aggregation=np.array(self.aggregation), voting=np.asarray(self.voting, dtype=bool))
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> Predictions:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["ids"], z["labels"], z["train"], z["shard"], z["slice"], z["probs"],
                       tuple(z["class_names"].tolist()), str(z["aggregation"]),
                       z["voting"] if "voting" in z.files else None)
