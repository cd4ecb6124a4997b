"""What each checkpoint was trained on, and how that compares to a revision. Pure.

A checkpoint after slice r of shard k is fully determined (training is
deterministic) by the data of slices 0..r of that shard. Its *lineage* records,
for each of those slices, a fingerprint of that data (sample id words and labels)
and the revision it was read from. Comparing a lineage with the fingerprints of
the current revision tells exactly which slices must be retrained.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shardwise.api.jobs import Checkpoint
from shardwise.brain.assignment import Assignment
from shardwise.brain.revision import RevisionState


def slice_fingerprints(assignment: Assignment, state: RevisionState, id_words: np.ndarray) -> list[list[str]]:
    """fingerprints[k][r]: sha256 of the active (id word, label) pairs in shard k, slice r.

    Sorted by id word, never by row position: the same samples give the same fingerprint
    whatever else the Dataset holds (a forget removes rows and moves the positions of others).
    """
    mask = (assignment.shard >= 0) & state.active
    idx = np.flatnonzero(mask)
    cell = assignment.shard[idx].astype(np.int64) * assignment.slices + assignment.slice[idx]
    words = np.asarray(id_words, dtype=np.uint64)[idx]
    labels = state.labels[idx].astype("<i8")
    order = np.argsort(words, kind="stable")  # two stable sorts: by word, then cell (faster than a lexsort)
    order = order[np.argsort(cell[order], kind="stable")]
    w, c = words[order], cell[order]
    if ((w[1:] == w[:-1]) & (c[1:] == c[:-1])).any():  # two samples share a word (never seen): labels decide
        order = np.lexsort((labels, words, cell))
    words, labels, cell = words[order].astype("<u8"), labels[order], cell[order]
    bounds = np.searchsorted(cell, np.arange(assignment.shards * assignment.slices + 1))
    out: list[list[str]] = []
    for k in range(assignment.shards):
        row = []
        for r in range(assignment.slices):
            c = k * assignment.slices + r
            lo, hi = bounds[c], bounds[c + 1]
            h = hashlib.sha256(words[lo:hi].tobytes())
            h.update(labels[lo:hi].tobytes())
            row.append(h.hexdigest()[:32])
        out.append(row)
    return out


@dataclass(frozen=True)
class CheckpointRef:
    """One stored checkpoint: shard k after slice r."""

    shard: int
    slice: int
    key: str
    sha256: str  # of the stored bytes (integrity)
    weights_sha256: str  # of the model's parameters (bit-for-bit identity)
    fingerprints: tuple[str, ...]  # lineage: data of slices 0..slice
    revisions: tuple[int, ...]  # lineage: revision each slice was read from

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "slice": self.slice,
            "key": self.key,
            "sha256": self.sha256,
            "weightsSha256": self.weights_sha256,
            "fingerprints": list(self.fingerprints),
            "revisions": list(self.revisions),
        }

    @classmethod
    def of(cls, c: Checkpoint) -> CheckpointRef:
        """From its form in a job request or status."""
        return cls.from_dict(c.model_dump())

    def checkpoint(self) -> Checkpoint:
        """Its form in a job request or status."""
        return Checkpoint.model_validate(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointRef:
        return cls(
            shard=int(d["shard"]),
            slice=int(d["slice"]),
            key=d["key"],
            sha256=d["sha256"],
            weights_sha256=d["weightsSha256"],
            fingerprints=tuple(d["fingerprints"]),
            revisions=tuple(int(x) for x in d["revisions"]),
        )


Chain = tuple[CheckpointRef, ...]  # one checkpoint per slice 0..R-1 of one shard


def first_stale_slice(chain: Chain | None, current: list[str]) -> int | None:
    """The earliest slice whose data differs from `current`; None if the chain is current.

    A shard with no chain (never trained, or partially trained) starts at slice 0
    or just after its last good checkpoint.
    """
    if not chain:
        return 0
    for r, ref in enumerate(chain):
        if ref.fingerprints[r] != current[r]:
            return r
    if len(chain) < len(current):
        return len(chain)
    return None


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    from_slice: int
    parent: CheckpointRef | None  # the checkpoint after from_slice-1, None to start fresh
    keep: Chain = field(default=())  # checkpoints reused unchanged (slices < from_slice)


def plan_shard(shard: int, chain: Chain | None, current: list[str],
               corrupt: frozenset[str] = frozenset()) -> ShardPlan | None:
    """Where the shard must retrain from; None if its chain is current.

    A checkpoint known to be corrupt counts as stale: the shard is rebuilt from the
    checkpoint before it (the previous good one), or from scratch if it was the first.
    """
    r = first_stale_slice(chain, current)
    bad = next((i for i, ref in enumerate(chain or ()) if ref.key in corrupt), None)
    if bad is not None:
        r = bad if r is None else min(r, bad)
    if r is None:
        return None
    keep = tuple(chain[:r]) if chain else ()
    return ShardPlan(shard=shard, from_slice=r, parent=keep[-1] if keep else None, keep=keep)
