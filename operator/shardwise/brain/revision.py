"""Dataset revisions: labels, drops and forgotten samples over the live rows. Pure.

A Dataset's stored state is cumulative: it describes its current revision C and holds
what is needed to read any earlier revision r <= C.

- `labels` and `dropped_at` are aligned with the live rows of the payload (the rows
  not forgotten); a relabel keeps an undo record (row, revision, label before), so
  the labels of revision r are the current ones with later relabels undone.
- A *drop* (a curation step) takes a row out of training but keeps it.
- A *forget* removes the row: from the payload, the labels and the undo records. What
  remains of a forgotten sample is a `Tombstones` entry: keyed tags (HMAC) of its id
  and owner, its placement words encrypted with the same key, whether it was a
  training sample, and two revisions. Nothing readable.

Forgotten samples are absent from every revision read afterwards: revision r read
after a later forget is revision r without them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np


@dataclass(frozen=True)
class RevisionState:
    """One revision, over the live rows: labels in force and the revision that dropped each row (0: active)."""

    revision: int
    labels: np.ndarray  # int64 (N,)
    tombstoned_at: np.ndarray  # int32 (N,), 0 = active

    @property
    def active(self) -> np.ndarray:
        return np.asarray(self.tombstoned_at == 0)


@dataclass(frozen=True)
class Tombstones:
    """Forgotten samples, in the order they were forgotten (append-only, so an index is stable)."""

    id_tag: np.ndarray  # S64 hex HMAC of the id
    owner_tag: np.ndarray  # S64 hex HMAC of the owner key, once its last sample is forgotten; else b""
    id_word: np.ndarray  # uint64 placement words (encrypted when stored; plain in memory)
    group_word: np.ndarray  # uint64
    train: np.ndarray  # bool: it was a training sample (test samples have no shard)
    since: np.ndarray  # int32: the revision from which no training read it (its drop or its forget)
    forgotten_at: np.ndarray  # int32: the revision that forgot it

    @classmethod
    def empty(cls) -> Tombstones:
        return cls(np.array([], dtype="S64"), np.array([], dtype="S64"), np.array([], dtype=np.uint64),
                   np.array([], dtype=np.uint64), np.array([], dtype=bool), np.array([], dtype=np.int32),
                   np.array([], dtype=np.int32))

    def __len__(self) -> int:
        return len(self.id_tag)

    def append(self, other: Tombstones) -> Tombstones:
        return Tombstones(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def take(self, idx: np.ndarray) -> Tombstones:
        return Tombstones(*(getattr(self, f.name)[idx] for f in fields(self)))


@dataclass(frozen=True)
class DatasetState:
    """The cumulative state at revision `revision` (see the module doc)."""

    revision: int
    labels: np.ndarray  # int64 (N,): labels at `revision`
    dropped_at: np.ndarray  # int32 (N,): revision that dropped the row, 0 when it is active
    undo_row: np.ndarray  # int64 (E,): relabel records, oldest first
    undo_rev: np.ndarray  # int32 (E,): the revision of the relabel
    undo_old: np.ndarray  # int64 (E,): the label before it
    tombstones: Tombstones

    @classmethod
    def initial(cls, labels: np.ndarray, revision: int = 1, tombstones: Tombstones | None = None) -> DatasetState:
        n = len(labels)
        return cls(revision, np.asarray(labels, dtype=np.int64), np.zeros(n, dtype=np.int32),
                   np.array([], dtype=np.int64), np.array([], dtype=np.int32), np.array([], dtype=np.int64),
                   tombstones if tombstones is not None else Tombstones.empty())

    def at(self, revision: int) -> RevisionState:
        """Revision `revision` over today's live rows."""
        if revision > self.revision or revision < 1:
            raise ValueError(f"revision {revision} is outside 1..{self.revision}")
        labels = self.labels.copy()
        later = np.flatnonzero(self.undo_rev > revision)
        if later.size:  # the earliest relabel after `revision` says what the label was then
            rows, first = np.unique(self.undo_row[later], return_index=True)
            labels[rows] = self.undo_old[later][first]
        dropped = np.where((self.dropped_at > 0) & (self.dropped_at <= revision), self.dropped_at, 0)
        return RevisionState(revision, labels, dropped.astype(np.int32))

    # -- the next revision ----------------------------------------------------------------
    def relabel(self, rows: np.ndarray, labels: np.ndarray) -> DatasetState:
        rev = self.revision + 1
        rows = np.asarray(rows, dtype=np.int64)
        new = self.labels.copy()
        old = new[rows].copy()
        new[rows] = labels
        return replace(self, revision=rev, labels=new,
                       undo_row=np.concatenate([self.undo_row, rows]),
                       undo_rev=np.concatenate([self.undo_rev, np.full(rows.size, rev, dtype=np.int32)]),
                       undo_old=np.concatenate([self.undo_old, old]))

    def drop(self, rows: np.ndarray) -> DatasetState:
        rev = self.revision + 1
        d = self.dropped_at.copy()
        rows = np.asarray(rows, dtype=np.int64)
        d[rows[d[rows] == 0]] = rev
        return replace(self, revision=rev, dropped_at=d)

    def forget(self, rows: np.ndarray, gone: Tombstones) -> DatasetState:
        """The next revision without `rows` (live rows), whose tombstones are `gone` (same order)."""
        rev = self.revision + 1
        rows = np.asarray(rows, dtype=np.int64)
        keep = np.ones(len(self.labels), dtype=bool)
        keep[rows] = False
        new_index = np.cumsum(keep) - 1  # old row -> new row, for the rows kept
        ev = keep[self.undo_row] if self.undo_row.size else np.array([], dtype=bool)
        since = np.where(self.dropped_at[rows] > 0, self.dropped_at[rows], rev).astype(np.int32)
        gone = replace(gone, since=since, forgotten_at=np.full(rows.size, rev, dtype=np.int32))
        return DatasetState(rev, self.labels[keep], self.dropped_at[keep], new_index[self.undo_row[ev]],
                            self.undo_rev[ev], self.undo_old[ev], self.tombstones.append(gone))

    def to_arrays(self) -> dict[str, np.ndarray]:
        t = self.tombstones
        return {"revision": np.array(self.revision), "labels": self.labels, "dropped_at": self.dropped_at,
                "undo_row": self.undo_row, "undo_rev": self.undo_rev, "undo_old": self.undo_old,
                **{f"t_{f.name}": getattr(t, f.name) for f in fields(t)}}

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> DatasetState:
        t = Tombstones(*(z[f"t_{f.name}"] for f in fields(Tombstones)))
        return cls(int(z["revision"]), z["labels"], z["dropped_at"], z["undo_row"], z["undo_rev"], z["undo_old"], t)


@dataclass(frozen=True)
class Resolution:
    """What a ForgetRequest names, resolved against a Dataset."""

    indices: np.ndarray  # live rows to forget now (dropped rows included: their data is still stored)
    already_forgotten: np.ndarray  # indices into the tombstones of samples an earlier revision forgot
    unknown: list[str]  # named but not in the Dataset: reported, never guessed


def resolve_ids(ids: np.ndarray, requested: list[str], requested_tags: list[bytes],
                tombstones: Tombstones) -> Resolution:
    """requested_tags[i] is the id tag of requested[i] (the caller holds the key)."""
    pos = {s: i for i, s in enumerate(ids.tolist())}
    forgotten = {t: i for i, t in enumerate(tombstones.id_tag.tolist())}
    found, already, unknown = [], [], []
    for r, tag in dict(zip(requested, requested_tags)).items():
        if r in pos:
            found.append(pos[r])
        elif tag in forgotten:
            already.append(forgotten[tag])
        else:
            unknown.append(r)
    return Resolution(np.array(found, dtype=np.int64), np.array(already, dtype=np.int64), unknown)


def resolve_owner(owners: np.ndarray, owner: str, owner_tag: bytes, tombstones: Tombstones) -> Resolution:
    hit = np.flatnonzero(owners == owner)
    already = np.flatnonzero(tombstones.owner_tag == owner_tag) if owner_tag else np.array([], dtype=np.int64)
    unknown = [] if hit.size or already.size else [owner]
    return Resolution(hit.astype(np.int64), already.astype(np.int64), unknown)
