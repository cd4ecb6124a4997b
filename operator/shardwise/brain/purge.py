"""Which stored checkpoints and versions still hold forgotten samples. Pure.

A checkpoint of shard k after slice r holds sample x (tombstoned at revision T)
when x lies in shard k at a slice s <= r and the lineage read slice s from a
revision older than T. A version holds x when any of its checkpoints does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shardwise.brain.assignment import Assignment
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest


def held_tombstones(ref: CheckpointRef, assignment: Assignment, tombstoned_at: np.ndarray) -> set[int]:
    """The tombstone revisions of the forgotten samples this checkpoint was trained on."""
    f = np.flatnonzero(tombstoned_at > 0)
    m = (assignment.shard[f] == ref.shard) & (assignment.slice[f] <= ref.slice) & (assignment.slice[f] >= 0)
    f = f[m]
    read_at = np.asarray(ref.revisions, dtype=np.int64)[assignment.slice[f]]
    t = tombstoned_at[f]
    return set(np.unique(t[read_at < t]).tolist())


@dataclass(frozen=True)
class PurgePlan:
    checkpoints: list[CheckpointRef] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    # what each purged object held: key or "version:<n>" -> tombstone revisions
    held: dict[str, list[int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.checkpoints and not self.versions


class PurgeWouldBreakServing(RuntimeError):
    """The published version still holds forgotten samples: a bug, never purge then."""


def plan_purge(
    stored: list[CheckpointRef],
    versions: list[VersionManifest],
    published: int | None,
    assignment: Assignment,
    tombstoned_at: np.ndarray,
) -> PurgePlan:
    held_by_key = {}
    for ref in stored:
        h = held_tombstones(ref, assignment, tombstoned_at)
        if h:
            held_by_key[ref.key] = (ref, h)
    purge_versions: list[int] = []
    held: dict[str, list[int]] = {k: sorted(h) for k, (_, h) in held_by_key.items()}
    for v in versions:
        hv: set[int] = set()
        for ref in (r for chain in v.chains for r in chain):
            hv |= held_by_key[ref.key][1] if ref.key in held_by_key else held_tombstones(ref, assignment, tombstoned_at)
        if hv:
            if v.version == published:
                raise PurgeWouldBreakServing(f"published version {v.version} still holds forgotten samples")
            purge_versions.append(v.version)
            held[f"version:{v.version}"] = sorted(hv)
    return PurgePlan(
        checkpoints=[ref for ref, _ in held_by_key.values()],
        versions=sorted(purge_versions),
        held=held,
    )
