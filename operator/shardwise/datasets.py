"""Dataset I/O: ingest a source into the store, write revisions, read them back.

Layout (see store.layout), for Dataset D:

  D/current.json            the current revision and the payload and state objects it reads;
                            swapped last, so a crash never leaves a revision half-visible
  D/payload/<sha256>.npz    the live rows: ids, owner keys, features, split, placement words
  D/<rev>/state.npz         the cumulative state at <rev> (brain.revision.DatasetState):
                            labels, drops, relabel undo records, tombstones
  D/<rev>/manifest.json     what the revision changed, who and when
  D/schema.json             fixed at first ingest: class list, feature names, sample shape
  D/secret.json             the per-Dataset HMAC key of the tombstones

Only the current payload and state are kept: every older one is deleted once the new
revision is in place, so a forgotten row survives nowhere. A forgotten sample leaves a
tombstone: an HMAC of its id (and owner key) under the Dataset's key, and its
placement words encrypted under it. That is enough to answer "already forgotten", to
keep a re-ingest of the source from bringing it back, and to find (and prove gone)
every checkpoint it was trained into; it is not enough to read it back.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from shardwise.api.common import iso, now
from shardwise.api.dataset import DatasetSpec
from shardwise.brain.assignment import Assignment, assign, canonical_order, sample_words
from shardwise.brain.purge import Gone
from shardwise.brain.revision import DatasetState, RevisionState, Tombstones
from shardwise.data.table import SampleTable
from shardwise.errors import InvalidInput, NotFound
from shardwise.faults import fault_point
from shardwise.store.base import Store
from shardwise.store.layout import Layout


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as its allow_pickle flag
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


class DatasetSchema(BaseModel):
    """What is fixed for the life of a Dataset (nothing here may depend on which rows are present)."""

    classes: list[str] = Field(description="Class names in code order.")
    classesFrom: str = Field(description="'spec' (spec.classes) or 'ingest' (the labels of the first ingest).")
    featureNames: list[str] | None = Field(None, description="Feature column names (tabular sources).")
    sampleShape: list[int]
    source: dict[str, Any] = Field(default_factory=dict, description="The spec it was ingested from.")


# -- the per-Dataset key ------------------------------------------------------------------
class DatasetKey:
    """HMAC tags and placement-word encryption under one Dataset's secret key."""

    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._secret, b"\0".join(parts), hashlib.sha256).digest()

    def tag(self, domain: str, text: str) -> bytes:
        return self._mac(domain.encode(), text.encode()).hex().encode()

    def id_tags(self, ids: list[str] | np.ndarray) -> np.ndarray:
        return np.array([self.tag("id", s) for s in list(ids)], dtype="S64")

    def owner_tags(self, owners: list[str] | np.ndarray) -> np.ndarray:
        return np.array([self.tag("owner", s) if s else b"" for s in list(owners)], dtype="S64")

    def digest(self, ids: list[str]) -> str:
        """A keyed commitment to a set of ids (a certificate names it, never the ids)."""
        return self._mac(b"ids", "\n".join(sorted(ids)).encode()).hex()

    def _masks(self, tags: np.ndarray, domain: bytes) -> np.ndarray:
        return np.array([int.from_bytes(self._mac(b"word", domain, bytes(t))[:8], "big") for t in tags.tolist()],
                        dtype=np.uint64)

    def seal(self, t: Tombstones) -> Tombstones:
        """Encrypt the placement words (XOR with a keyed mask per tag); the same call decrypts."""
        return replace(t, id_word=t.id_word ^ self._masks(t.id_tag, b"id"),
                       group_word=t.group_word ^ self._masks(t.id_tag, b"group"))


# -- the payload ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """The live rows, as stored."""

    ids: np.ndarray
    owners: np.ndarray
    features: np.ndarray
    train: np.ndarray
    id_word: np.ndarray
    group_word: np.ndarray

    def take(self, keep: np.ndarray) -> Payload:
        return Payload(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    def to_npz(self) -> bytes:
        # Uncompressed: a forget rewrites the payload, and compressing float32 features costs
        # seconds for little saving (benchmarks B4).
        return _npz(ids=self.ids.astype(str), owners=self.owners.astype(str),
                    features=self.features.astype(np.float32), train=self.train.astype(bool),
                    id_word=self.id_word.astype(np.uint64), group_word=self.group_word.astype(np.uint64))

    @classmethod
    def from_npz(cls, data: bytes) -> Payload:
        z = _load_npz(data)
        return cls(z["ids"], z["owners"], z["features"], z["train"], z["id_word"], z["group_word"])


@dataclass(frozen=True)
class DatasetView:
    """One revision of a Dataset, as training, planning and evaluation read it.

    Rows are the live rows (never a forgotten sample); `state` is the revision read.
    `forgotten` holds every sample forgotten up to the Dataset's current revision,
    with its placement words (decrypted)."""

    name: str
    table: SampleTable  # table.labels are the labels of `state.revision`
    train: np.ndarray  # bool (N,)
    id_words: np.ndarray  # uint64 (N,)
    group_words: np.ndarray  # uint64 (N,)
    state: RevisionState
    forgotten: Tombstones
    current: int  # the Dataset's current revision when this was read
    payload_key: str
    schema: DatasetSchema
    dropped_now: np.ndarray  # bool (N,): dropped by the current revision (perhaps after this one)

    def words(self, by_owner: bool) -> np.ndarray:
        return self.group_words if by_owner else self.id_words

    def assignment(self, shards: int, slices: int, seed: int, by_owner: bool) -> Assignment:
        return assign(self.words(by_owner), self.train, shards, slices, seed)

    def gone(self, shards: int, slices: int, seed: int, by_owner: bool) -> Gone:
        """Placement of every sample not trained on at this revision: dropped rows and forgotten samples
        (up to this revision), with the revision from which no training read them."""
        a = self.assignment(shards, slices, seed, by_owner)
        dropped = np.flatnonzero(~self.state.active)
        t = self.forgotten
        due = np.flatnonzero(t.since <= self.state.revision)
        ft = assign(t.group_word[due] if by_owner else t.id_word[due], t.train[due], shards, slices, seed)
        return Gone(np.concatenate([a.shard[dropped], ft.shard]), np.concatenate([a.slice[dropped], ft.slice]),
                    np.concatenate([self.state.tombstoned_at[dropped], t.since[due]]).astype(np.int32))

    def forgotten_since(self, revision: int, shards: int, slices: int, seed: int, by_owner: bool) -> Assignment:
        """Placement of the samples that were trained on at `revision` and have been forgotten since."""
        t = self.forgotten
        m = t.since > revision
        return assign((t.group_word if by_owner else t.id_word)[m], t.train[m], shards, slices, seed)

    def order(self, rows: np.ndarray) -> np.ndarray:
        """`rows` in canonical order (by id word): the order a shard sees its samples in."""
        rows = np.asarray(rows, dtype=np.int64)
        return rows[canonical_order(self.id_words[rows], self.table.ids[rows])]


class DatasetStore:
    def __init__(self, store: Store, layout: Layout):
        self.store, self.layout = store, layout
        self._keys: dict[str, DatasetKey] = {}

    # -- keys and schema ----------------------------------------------------------------------
    def key(self, name: str, create: bool = False) -> DatasetKey:
        if name not in self._keys:
            k = self.layout.dataset_secret(name)
            try:
                secret = bytes.fromhex(self.store.get_json(k)["hmacKey"])
            except NotFound:
                if not create:
                    raise NotFound(f"Dataset {self.layout.namespace}/{name} has no key (never ingested)") from None
                secret = os.urandom(32)
                self.store.put_json(k, {"hmacKey": secret.hex(), "createdAt": iso(now())})
            self._keys[name] = DatasetKey(secret)
        return self._keys[name]

    def schema(self, name: str) -> DatasetSchema | None:
        try:
            return DatasetSchema.model_validate(self.store.get_json(self.layout.dataset_schema(name)))
        except NotFound:
            return None

    # -- writing ---------------------------------------------------------------------------------
    def ingest(self, name: str, spec: DatasetSpec, table: SampleTable,
               feature_names: list[str] | None = None) -> tuple[int, int]:
        """Write the first revision (or, over an earlier ingest, the next one: a new source).

        Samples an earlier revision forgot (by id, or by owner key) are left out, so a
        re-ingest never brings them back. Returns (revision, samples left out)."""
        L = self.layout
        key = self.key(name, create=True)
        prior = self._state_or_none(name)
        tomb = prior.tombstones if prior is not None else Tombstones.empty()
        skip = np.zeros(len(table), dtype=bool)
        if len(tomb):
            skip |= np.isin(key.id_tags(table.ids), tomb.id_tag)
            owned = table.owners != ""
            if owned.any():
                forgotten_owners = tomb.owner_tag[tomb.owner_tag != b""]
                skip[owned] |= np.isin(key.owner_tags(table.owners[owned]), forgotten_owners)
        keep = ~skip
        ids, owners = table.ids[keep], table.owners[keep]
        id_w, group_w = sample_words(spec.seed, ids, owners)
        payload = Payload(ids, owners, table.features[keep], split_mask(ids, spec.testFraction, spec.seed), id_w,
                          group_w)
        schema = DatasetSchema(classes=list(table.class_names), classesFrom="spec" if spec.classes else "ingest",
                               featureNames=feature_names, sampleShape=list(table.features.shape[1:]),
                               source=spec.model_dump(mode="json"))
        self.store.put_json(L.dataset_schema(name), schema.model_dump(mode="json"))
        rev = prior.revision + 1 if prior is not None else 1
        state = DatasetState.initial(table.labels[keep], rev, tomb)
        self._write(name, state, {"kind": "ingest", "samples": int(keep.sum()), "leftOutForgotten": int(skip.sum())},
                    payload)
        return rev, int(skip.sum())

    def write_state(self, name: str, state: DatasetState, change: dict) -> None:
        """A revision that keeps the payload (a relabel or a drop)."""
        self._write(name, state, change, None)

    def _write(self, name: str, state: DatasetState, change: dict, payload: Payload | None) -> None:
        """Payload (if new) and state, the manifest, then the one atomic swap; then delete what it replaced."""
        L = self.layout
        key = self.key(name, create=True)
        cur = self._current_or_none(name)
        if payload is not None:
            data = payload.to_npz()
            sha = hashlib.sha256(data).hexdigest()
            pkey = L.dataset_payload(name, sha)
            self.store.put_verified(pkey, data)
            pay = {"key": pkey, "sha256": sha}
        elif cur is not None:
            pay = cur["payload"]
        else:
            raise NotFound(f"Dataset {L.namespace}/{name} has not been ingested")
        sealed = replace(state, tombstones=key.seal(state.tombstones))
        skey = L.dataset_state(name, state.revision)
        ssha = self.store.put_verified(skey, _npz(**sealed.to_arrays()))
        self.store.put_json(L.dataset_revision(name, state.revision),
                            {"revision": state.revision, "createdAt": iso(now()), "change": change})
        fault_point("dataset.after-revision")
        self.store.put_json(L.dataset_current(name), {"revision": state.revision, "payload": pay,
                                                      "state": {"key": skey, "sha256": ssha}})
        self.cleanup(name)

    def cleanup(self, name: str) -> list[str]:
        """Delete every payload and state object the current revision does not read (older revisions,
        and what a crash between a write and its swap left behind). Returns the keys deleted."""
        cur = self._current_or_none(name)
        if cur is None or "state" not in cur:
            return []
        keep = {cur["payload"]["key"], cur["state"]["key"]}
        L, payloads = self.layout, self.layout.dataset_payloads(name)
        stale = [k for k in self.store.list(L.dataset_objects(name)) if k not in keep
                 and (k.startswith(payloads) or ((p := L.parse(k)) is not None and p.kind == "dataset-state"))]
        for k in stale:
            self.store.delete(k)
        return stale

    def forget(self, name: str, rows: np.ndarray, change: dict) -> tuple[DatasetState, Tombstones]:
        """The next revision without `rows` (positions of live rows). Their payload rows, labels and
        relabel records go; tombstones stay. Manifests that named them are rewritten to name their
        tags. Returns the new state and the new tombstones (plain words)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        cur = self._current(name)
        payload = self._payload(cur)
        state = self._state(name, cur)
        key = self.key(name)
        tags = key.id_tags(payload.ids[rows])
        keep = np.ones(len(payload.ids), dtype=bool)
        keep[rows] = False
        # an owner key is tagged only once its last sample goes: until then it is still in use
        live_owners = set(payload.owners[keep].tolist())
        owners = [o if o not in live_owners else "" for o in payload.owners[rows].tolist()]
        gone = Tombstones(tags, key.owner_tags(owners), payload.id_word[rows], payload.group_word[rows],
                          payload.train[rows], np.zeros(rows.size, np.int32), np.zeros(rows.size, np.int32))
        # the earlier manifests that name these samples: their relabels and their drop
        named = set(state.undo_rev[np.isin(state.undo_row, rows)].tolist()) | set(
            state.dropped_at[rows][state.dropped_at[rows] > 0].tolist())
        ids = dict(zip(payload.ids[rows].tolist(), tags.tolist()))
        new = state.forget(rows, gone)
        self._write(name, new, change, payload.take(keep))
        for rev in sorted(named):
            self._redact_manifest(name, rev, ids, new.revision)
        return new, new.tombstones.take(np.arange(len(state.tombstones), len(new.tombstones)))

    def _redact_manifest(self, name: str, rev: int, ids: dict[str, bytes], forgotten_at: int) -> None:
        key = self.layout.dataset_revision(name, rev)
        doc = self.store.get_json(key)
        change = doc.get("change", {})
        if change.get("labels"):
            change["labels"] = [e if e["id"] not in ids else {"idTag": ids[e["id"]].decode(),
                                                              "forgottenAt": forgotten_at}
                                for e in change["labels"]]
        if change.get("ids"):
            change["ids"] = [i if i not in ids else {"idTag": ids[i].decode(), "forgottenAt": forgotten_at}
                             for i in change["ids"]]
        self.store.put_json(key, doc)

    # -- reading ---------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return self.store.exists(self.layout.dataset_current(name))

    def _current_or_none(self, name: str) -> dict | None:
        try:
            return self.store.get_json(self.layout.dataset_current(name))
        except NotFound:
            return None

    def _current(self, name: str) -> dict:
        cur = self._current_or_none(name)
        if cur is None:
            raise NotFound(f"Dataset {self.layout.namespace}/{name} has not been ingested")
        if "state" not in cur:
            raise InvalidInput(f"Dataset {self.layout.namespace}/{name} was stored by an earlier Shardwise "
                               "(no cumulative state): delete its store prefix and ingest it again")
        return cur

    def current_revision(self, name: str) -> int:
        return int(self._current(name)["revision"])

    def _payload(self, cur: dict) -> Payload:
        return Payload.from_npz(self.store.get_verified(cur["payload"]["key"], cur["payload"]["sha256"]))

    def _state(self, name: str, cur: dict) -> DatasetState:
        st = DatasetState.from_arrays(_load_npz(self.store.get_verified(cur["state"]["key"], cur["state"]["sha256"])))
        return replace(st, tombstones=self.key(name).seal(st.tombstones))

    def _state_or_none(self, name: str) -> DatasetState | None:
        cur = self._current_or_none(name)
        return None if cur is None or "state" not in cur else self._state(name, cur)

    def cumulative(self, name: str) -> DatasetState:
        """The current cumulative state (tombstone words decrypted)."""
        return self._read(name, lambda cur: self._state(name, cur))

    def state(self, name: str, revision: int) -> RevisionState:
        return self.cumulative(name).at(revision)

    def _read(self, name: str, fn):
        """fn(current.json), read again when a concurrent revision deleted what it named."""
        for attempt in range(5):
            cur = self._current(name)
            try:
                return fn(cur)
            except NotFound:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def view(self, name: str, revision: int | None = None) -> DatasetView:
        def read(cur: dict) -> DatasetView:
            payload = self._payload(cur)
            st = self._state(name, cur)
            rev = st.revision if revision is None else revision
            at = st.at(rev)
            schema = self.schema(name)
            if schema is None:
                raise NotFound(f"Dataset {self.layout.namespace}/{name} has no schema.json")
            table = SampleTable(payload.ids, at.labels, payload.features, payload.owners, tuple(schema.classes))
            return DatasetView(name, table, payload.train, payload.id_word, payload.group_word, at, st.tombstones,
                               st.revision, cur["payload"]["key"], schema, st.dropped_at > 0)
        return self._read(name, read)
