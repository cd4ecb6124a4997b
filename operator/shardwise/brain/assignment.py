"""Which shard and slice each sample belongs to. Pure and vectorised.

The assignment is computed from the Dataset's base sample list (never from a
revision), so tombstoning a sample moves no other sample: a forgotten sample
simply becomes inactive where it stood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def group_codes(owners: np.ndarray, by_owner: bool = True) -> np.ndarray:
    """One int per sample; samples that must stay together share it.

    The code of a group is the index of its first sample, so it does not depend on
    the owner strings themselves (they are scrubbed when an owner is forgotten).
    Samples without an owner (empty string) are groups of their own.
    """
    n = len(owners)
    codes = np.arange(n, dtype=np.int64)
    if not by_owner or n == 0:
        return codes
    owned = np.flatnonzero(owners != "")
    if owned.size:
        _, first, inverse = np.unique(owners[owned], return_index=True, return_inverse=True)
        codes[owned] = owned[first][inverse]
    return codes


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


def assign(groups: np.ndarray, train_mask: np.ndarray, shards: int, slices: int, seed: int) -> Assignment:
    """Deterministic, balanced placement of groups onto shards, then slices.

    Groups are laid end to end in a seeded random order; shard k takes the groups
    that start in the k-th 1/S of that line, and within a shard slice r the groups
    that start in its r-th 1/R. With singleton groups shard sizes differ by at most 1
    (slices likewise); with larger groups by at most the largest group.
    """
    if shards < 1 or slices < 1:
        raise ValueError("shards and slices must be >= 1")
    n_all = len(groups)
    shard = np.full(n_all, -1, dtype=np.int32)
    slc = np.full(n_all, -1, dtype=np.int32)
    idx = np.flatnonzero(train_mask)
    n = idx.size
    if n == 0:
        return Assignment(shards, slices, shard, slc)

    units, unit_of, sizes = np.unique(groups[idx], return_inverse=True, return_counts=True)
    order = np.random.default_rng([seed, 0x5151]).permutation(units.size)
    start = np.empty(units.size, dtype=np.int64)
    start[order] = np.cumsum(sizes[order]) - sizes[order]

    unit_shard = (start * shards) // n
    # Position of each unit inside its shard, and each shard's size.
    shard_size = np.bincount(unit_shard, weights=sizes, minlength=shards).astype(np.int64)
    first_in_shard = np.full(shards, n, dtype=np.int64)
    np.minimum.at(first_in_shard, unit_shard, start)
    pos = start - first_in_shard[unit_shard]
    unit_slice = (pos * slices) // np.maximum(shard_size[unit_shard], 1)

    shard[idx] = unit_shard[unit_of]
    slc[idx] = unit_slice[unit_of]
    return Assignment(shards, slices, shard, slc)
