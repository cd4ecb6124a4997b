"""Which shard and slice each sample belongs to. Pure and vectorised.

A sample's place depends only on seeds and its own key, never on the rest of the
list: removing rows from the source moves no other sample, so a model trained
after a forget equals one trained from scratch on the source without those rows.

Every sample gets two 64-bit *words* at ingest, keyed hashes of the Dataset seed and
its own keys: the id word (of its id) and the group word (of its owner key, or of its
id when it has none). Read as a point on a ring, a word's high half picks the shard
and its low half the slice: shard k holds the arc [k/S, (k+1)/S) of the ring, turned
by an offset drawn from the model's seed. Samples of one owner share a group word and
so a shard and a slice. Hash placement is balanced only on average: shard sizes
spread like a multinomial (about ±sqrt(N/S)), which `spread` reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

HALF = np.uint64(32)
LOW = np.uint64(0xFFFF_FFFF)


def key_words(seed: int, domain: str, keys: Iterable[str]) -> np.ndarray:
    """uint64 keyed hash of each key (BLAKE2b keyed by the seed, personalised by the domain)."""
    k = int(seed).to_bytes(8, "big")
    person = domain.encode()[:16]
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8, key=k, person=person).digest(), "big")
         for s in keys),
        dtype=np.uint64,
    )


def sample_words(seed: int, ids: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(id words, group words) of samples: the group word is the owner's, or the id word without one."""
    id_w = key_words(seed, "id", ids.tolist())
    group_w = id_w.copy()
    owned = np.flatnonzero(owners != "")
    if owned.size:
        group_w[owned] = key_words(seed, "owner", owners[owned].tolist())
    return id_w, group_w


def _offsets(seed: int) -> tuple[np.uint64, np.uint64]:
    h = int.from_bytes(hashlib.blake2b(str(int(seed)).encode(), digest_size=8, person=b"ring").digest(), "big")
    return np.uint64(h >> 32), np.uint64(h & 0xFFFF_FFFF)


def place(words: np.ndarray, shards: int, slices: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(shard, slice) of each word, int32."""
    if shards < 1 or slices < 1:
        raise ValueError("shards and slices must be >= 1")
    w = np.asarray(words, dtype=np.uint64)
    off_hi, off_lo = _offsets(seed)
    with np.errstate(over="ignore"):
        hi = ((w >> HALF) + off_hi) & LOW
        lo = ((w & LOW) + off_lo) & LOW
        shard = (hi * np.uint64(shards)) >> HALF
        slc = (lo * np.uint64(slices)) >> HALF
    return shard.astype(np.int32), slc.astype(np.int32)


@dataclass(frozen=True)
class Assignment:
    """shard[i], slice[i] for every sample i; -1 for samples outside training (test split)."""

    shards: int
    slices: int
    shard: np.ndarray  # int32 (N,)
    slice: np.ndarray  # int32 (N,)

    def members(self, shard: int, upto_slice: int | None = None) -> np.ndarray:
        """Indices of samples in `shard` (and slice <= upto_slice), ascending."""
        m = self.shard == shard
        if upto_slice is not None:
            m &= self.slice <= upto_slice
        return np.flatnonzero(m)

    def spread(self, active: np.ndarray | None = None) -> dict[str, object]:
        """Training samples per shard, and the smallest and largest slice: what hash placement gave."""
        m = (self.shard >= 0) if active is None else (self.shard >= 0) & active
        per_shard = np.bincount(self.shard[m], minlength=self.shards)
        cells = np.bincount(self.shard[m].astype(np.int64) * self.slices + self.slice[m],
                            minlength=self.shards * self.slices)
        return {"shardSamples": per_shard.tolist(), "sliceMin": int(cells.min()), "sliceMax": int(cells.max()),
                "emptyShards": np.flatnonzero(per_shard == 0).tolist()}


def assign(words: np.ndarray, train_mask: np.ndarray, shards: int, slices: int, seed: int) -> Assignment:
    """Place every training sample by its word; test samples get -1."""
    shard, slc = place(words, shards, slices, seed)
    train = np.asarray(train_mask, dtype=bool)
    shard[~train] = -1
    slc[~train] = -1
    return Assignment(shards, slices, shard, slc)


def canonical_order(id_words: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A permutation that sorts samples by their id word (ties by id): the same for any row order."""
    return np.lexsort((ids, id_words))
