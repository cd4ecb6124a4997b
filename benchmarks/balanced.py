"""The PRE-CHANGE balanced placement, kept ONLY as a benchmark baseline (B1).

Until the placement became a keyed hash of each sample's own key (issue "Forgetting you
can certify"), shards and slices were a seeded balanced permutation of the base sample
list. The issue asks that accuracy stay within 1 point of that placement, so B1 trains
every configuration both ways in the same run. `group_codes` and `balanced_assign` below
are copied unchanged (but for the name of `assign`) from operator/shardwise/brain/
assignment.py at commit b2e891f; `benchmarks.harness.balanced_placement()` puts them where
the removed `DatasetView.assignment` of that commit was. Nothing outside the benchmarks
uses them.
"""

from __future__ import annotations

import numpy as np

from shardwise.brain.assignment import Assignment


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


def balanced_assign(groups: np.ndarray, train_mask: np.ndarray, shards: int, slices: int, seed: int) -> Assignment:
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

