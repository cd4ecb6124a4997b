"""Dataset I/O: ingest a source into the store and read revisions back.

Layout (see store.layout): an immutable payload (features, ids, owners) and an
immutable index (split, groups), plus one state per revision (labels in force,
tombstones). current.json names the current revision; it is swapped last, so a
crash never leaves a revision half-visible.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from shardwise.api.common import iso, now
from shardwise.api.dataset import DatasetSpec
from shardwise.brain.assignment import Assignment, assign, group_codes
from shardwise.brain.revision import RevisionState, scrubbed_owner
from shardwise.data.table import SampleTable
from shardwise.errors import NotFound
from shardwise.store.base import Store
from shardwise.store.layout import Layout


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _load_npz(data: bytes) -> dict[str, np.ndarray]:
    z = np.load(io.BytesIO(data), allow_pickle=False)
    return {k: z[k] for k in z.files}


def split_mask(ids: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """True for training samples: a seeded hash of the id, stable for any row order."""
    u = np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big") for i in ids.tolist()],
        dtype=np.uint64,
    )
    return (u / np.float64(2**64)) >= test_fraction


@dataclass(frozen=True)
class DatasetView:
    """Everything about one revision of a Dataset that training and planning need."""

    name: str
    table: SampleTable
    train: np.ndarray  # bool (N,)
    groups: np.ndarray  # int64 (N,)
    state: RevisionState
    payload_key: str
    payload_sha256: str

    def assignment(self, shards: int, slices: int, seed: int, by_owner: bool) -> Assignment:
        groups = self.groups if by_owner else np.arange(len(self.groups), dtype=np.int64)
        return assign(groups, self.train, shards, slices, seed)


class DatasetStore:
    def __init__(self, store: Store, layout: Layout):
        self.store, self.layout = store, layout

    # -- writing ----------------------------------------------------------------
    def ingest(self, name: str, spec: DatasetSpec, table: SampleTable) -> int:
        """Write revision 1. Payload and index first, current.json last."""
        L = self.layout
        self._put_payload(name, table)
        train = split_mask(table.ids, spec.testFraction, spec.seed)
        self.store.put_verified(L.dataset_index(name), _npz(train=train, groups=group_codes(table.owners)))
        state = RevisionState(1, table.labels.astype(np.int64), np.zeros(len(table), dtype=np.int32))
        self.write_revision(name, state, {"kind": "ingest", "samples": len(table)})
        return 1

    def _put_payload(self, name: str, table: SampleTable) -> None:
        data = table.to_npz()
        sha = hashlib.sha256(data).hexdigest()
        key = self.layout.dataset_payload(name, sha)
        self.store.put_verified(key, data)
        self.store.put_json(self.layout.dataset_payload_pointer(name), {"key": key, "sha256": sha})

    def write_revision(self, name: str, state: RevisionState, change: dict) -> None:
        L = self.layout
        self.store.put_verified(
            L.dataset_state(name, state.revision), _npz(labels=state.labels, tombstoned_at=state.tombstoned_at)
        )
        self.store.put_json(
            L.dataset_revision(name, state.revision),
            {"revision": state.revision, "createdAt": iso(now()), "change": change},
        )
        self.store.put_json(L.dataset_current(name), {"revision": state.revision})

    def scrub(self, name: str) -> int:
        """Blank the payload rows of forgotten samples (features zeroed, owner hashed).

        The ids stay, as tombstone records. Returns how many rows were scrubbed.
        The old payload object is deleted only after the new one is in place.
        """
        view = self.view(name)
        dead = ~view.state.active
        t = view.table
        if not dead.any():
            return 0
        features = t.features.copy()
        features[dead] = 0.0
        owners = t.owners.astype(object).copy()
        owners[dead] = [scrubbed_owner(o) if o and not o.startswith("sha256:") else o for o in owners[dead]]
        new = SampleTable(t.ids, t.labels, features, owners.astype(str), t.class_names)
        if np.array_equal(new.features, t.features) and np.array_equal(new.owners, t.owners):
            return 0
        self._put_payload(name, new)
        self.store.delete(view.payload_key)
        return int(dead.sum())

    # -- reading ----------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.store.exists(self.layout.dataset_current(name))

    def current_revision(self, name: str) -> int:
        try:
            return int(self.store.get_json(self.layout.dataset_current(name))["revision"])
        except NotFound:
            raise NotFound(f"Dataset {self.layout.namespace}/{name} has not been ingested") from None

    def state(self, name: str, revision: int) -> RevisionState:
        z = _load_npz(self.store.get_verified(self.layout.dataset_state(name, revision)))
        return RevisionState(revision, z["labels"], z["tombstoned_at"])

    def view(self, name: str, revision: int | None = None) -> DatasetView:
        rev = self.current_revision(name) if revision is None else revision
        ptr = self.store.get_json(self.layout.dataset_payload_pointer(name))
        table = SampleTable.from_npz(self.store.get_verified(ptr["key"], ptr["sha256"]))
        idx = _load_npz(self.store.get_verified(self.layout.dataset_index(name)))
        return DatasetView(name, table, idx["train"], idx["groups"], self.state(name, rev), ptr["key"], ptr["sha256"])
