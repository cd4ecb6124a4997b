"""Dataset revisions: labels and tombstones over an immutable base. Pure.

A revision's state is two aligned arrays over the base samples:
labels[i] (the label in force) and tombstoned_at[i] (the revision that forgot
sample i, 0 while it is active). Tombstones are never lifted: nothing is
forgotten twice and nothing forgotten is learned again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

SCRUBBED_OWNER_PREFIX = "sha256:"


def scrubbed_owner(owner: str) -> str:
    """What an owner key becomes once its samples are forgotten."""
    return SCRUBBED_OWNER_PREFIX + hashlib.sha256(owner.encode()).hexdigest()


@dataclass(frozen=True)
class RevisionState:
    revision: int
    labels: np.ndarray  # int64 (N,)
    tombstoned_at: np.ndarray  # int32 (N,), 0 = active

    @property
    def active(self) -> np.ndarray:
        return self.tombstoned_at == 0

    def forget(self, indices: np.ndarray) -> "RevisionState":
        """The next revision, with `indices` tombstoned (already-forgotten ones kept as they were)."""
        rev = self.revision + 1
        t = self.tombstoned_at.copy()
        idx = np.asarray(indices, dtype=np.int64)
        t[idx[t[idx] == 0]] = rev
        return RevisionState(rev, self.labels, t)

    def relabel(self, indices: np.ndarray, labels: np.ndarray) -> "RevisionState":
        new = self.labels.copy()
        new[np.asarray(indices, dtype=np.int64)] = labels
        return RevisionState(self.revision + 1, new, self.tombstoned_at)


@dataclass(frozen=True)
class Resolution:
    """Sample ids resolved against a Dataset: what a ForgetRequest names."""

    indices: np.ndarray  # samples to tombstone now
    already_forgotten: np.ndarray  # named, but forgotten by an earlier revision
    unknown: list[str]  # named but not in the Dataset: reported, never guessed


def resolve_ids(ids: np.ndarray, requested: list[str], tombstoned_at: np.ndarray) -> Resolution:
    pos = {s: i for i, s in enumerate(ids.tolist())}
    found = [pos[r] for r in dict.fromkeys(requested) if r in pos]
    unknown = [r for r in dict.fromkeys(requested) if r not in pos]
    return _split(np.array(found, dtype=np.int64), unknown, tombstoned_at)


def resolve_owner(owners: np.ndarray, owner: str, tombstoned_at: np.ndarray) -> Resolution:
    hit = np.flatnonzero((owners == owner) | (owners == scrubbed_owner(owner)))
    unknown = [] if hit.size else [owner]
    return _split(hit.astype(np.int64), unknown, tombstoned_at)


def _split(idx: np.ndarray, unknown: list[str], tombstoned_at: np.ndarray) -> Resolution:
    done = tombstoned_at[idx] != 0
    return Resolution(indices=idx[~done], already_forgotten=idx[done], unknown=unknown)
