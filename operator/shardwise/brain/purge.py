"""Which stored checkpoints and versions still hold forgotten samples. Pure.

A checkpoint of shard k after slice r holds sample x (no longer trained on from
revision T: dropped or forgotten) when x lay in shard k at a slice s <= r and the
lineage read slice s from a revision older than T. A version holds x when any of its checkpoints does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest


@dataclass(frozen=True)
class Gone:
    """Where the samples no longer trained on were placed in one model, and since when.

    since[i]: the revision from which training no longer read sample i (its drop or forget)."""

    shard: np.ndarray  # int32, -1 for test samples
    slice: np.ndarray  # int32
    since: np.ndarray  # int32

    @classmethod
    def empty(cls) -> Gone:
        return cls(*(np.array([], dtype=np.int32) for _ in range(3)))

    def upto(self, revision: int) -> Gone:
        m = self.since <= revision
        return Gone(self.shard[m], self.slice[m], self.since[m])


def held_tombstones(ref: CheckpointRef, gone: Gone) -> set[int]:
    """The revisions (`since`) of the gone samples this checkpoint was trained on."""
    m = (gone.shard == ref.shard) & (gone.slice <= ref.slice) & (gone.slice >= 0)
    read_at = np.asarray(ref.revisions, dtype=np.int64)[gone.slice[m]]
    t = gone.since[m]
    return set(np.unique(t[read_at < t]).tolist())


@dataclass(frozen=True)
class PurgePlan:
    checkpoints: list[CheckpointRef] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    # what each purged object held: key or "version:<n>" -> tombstone revisions
    held: dict[str, list[int]] = field(default_factory=dict)
    version_held: dict[int, list[str]] = field(default_factory=dict)  # version -> its checkpoints that held some

    @property
    def empty(self) -> bool:
        return not self.checkpoints and not self.versions


def orphans_to_delete(undescribed: list[tuple[str, int, int]], revision: int, busy: set[int]) -> list[str]:
    """Checkpoints (key, shard, revision) that no meta.json and no version describes: a trainer killed
    between a checkpoint and its meta leaves such an orphan. Without lineage it cannot be judged, so one
    trained at a revision older than `revision` goes, unless a job on its shard is running (it may be the
    one about to write the meta)."""
    return sorted(key for key, shard, rev in undescribed if rev < revision and shard not in busy)


class PurgeWouldBreakServing(RuntimeError):
    """The published version still holds forgotten samples: a bug, never purge then."""


def plan_purge(
    stored: list[CheckpointRef],
    versions: list[VersionManifest],
    published: int | None,
    gone: Gone,
) -> PurgePlan:
    held_by_key = {}
    for ref in stored:
        h = held_tombstones(ref, gone)
        if h:
            held_by_key[ref.key] = (ref, h)
    purge_versions: list[int] = []
    held: dict[str, list[int]] = {k: sorted(h) for k, (_, h) in held_by_key.items()}
    version_held: dict[int, list[str]] = {}
    for v in versions:
        hv: set[int] = set()
        keys = []
        for ref in (r for chain in v.chains for r in chain):
            h = held_by_key[ref.key][1] if ref.key in held_by_key else held_tombstones(ref, gone)
            if h:
                hv |= h
                keys.append(ref.key)
        if hv:
            if v.version == published:
                raise PurgeWouldBreakServing(f"published version {v.version} still holds forgotten samples")
            purge_versions.append(v.version)
            held[f"version:{v.version}"] = sorted(hv)
            version_held[v.version] = sorted(keys)
    return PurgePlan(
        checkpoints=[ref for ref, _ in held_by_key.values()],
        versions=sorted(purge_versions),
        held=held,
        version_held=version_held,
    )
