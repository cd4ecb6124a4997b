"""The assignment of samples to shards and slices: balance, determinism, stability."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shardwise.brain.assignment import assign, group_codes


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 400))
    owners = draw(st.lists(st.sampled_from(["", "", "", "a", "b", "c", "d"]), min_size=n, max_size=n))
    train = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return np.array(owners), np.array(train, dtype=bool)


@settings(max_examples=150, deadline=None)
@given(datasets(), st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_singletons_are_balanced_to_one_sample(data, shards, slices, seed):
    owners, train = data
    a = assign(np.arange(len(owners)), train, shards, slices, seed)
    n = int(train.sum())
    assert ((a.shard >= 0) == train).all() and ((a.slice >= 0) == train).all()
    sizes = np.bincount(a.shard[train], minlength=shards)
    assert sizes.max() - sizes.min() <= 1
    for k in range(shards):
        in_k = a.slice[a.shard == k]
        per_slice = np.bincount(in_k, minlength=slices)
        assert per_slice.max() - per_slice.min() <= 1
    assert sizes.sum() == n


@settings(max_examples=150, deadline=None)
@given(datasets(), st.integers(1, 8), st.integers(1, 6), st.integers(0, 1000))
def test_owner_groups_stay_together_and_stay_balanced(data, shards, slices, seed):
    owners, train = data
    g = group_codes(owners)
    a = assign(g, train, shards, slices, seed)
    for o in set(owners.tolist()) - {""}:
        m = (owners == o) & train
        assert len(set(zip(a.shard[m].tolist(), a.slice[m].tolist()))) <= 1
    if train.any():
        biggest = max(np.bincount(np.unique(g[train], return_inverse=True)[1]))
        sizes = np.bincount(a.shard[train], minlength=shards)
        assert sizes.max() - sizes.min() <= 2 * biggest


@settings(max_examples=100, deadline=None)
@given(datasets(), st.integers(1, 8), st.integers(1, 6), st.integers(0, 1000))
def test_deterministic_and_independent_of_owner_spelling(data, shards, slices, seed):
    owners, train = data
    a1 = assign(group_codes(owners), train, shards, slices, seed)
    a2 = assign(group_codes(owners.copy()), train.copy(), shards, slices, seed)
    # forgetting scrubs owner keys to hashes: the groups, and so the placement, must not move
    renamed = np.array([("sha256:" + o) if o else "" for o in owners.tolist()])
    a3 = assign(group_codes(renamed), train, shards, slices, seed)
    for b in (a2, a3):
        assert (a1.shard == b.shard).all() and (a1.slice == b.slice).all()


def test_group_codes_are_first_index_of_the_owner():
    owners = np.array(["x", "", "y", "x", "", "y"])
    assert group_codes(owners).tolist() == [0, 1, 2, 0, 4, 2]
    assert group_codes(owners, by_owner=False).tolist() == list(range(6))


def test_a_different_seed_gives_a_different_placement():
    n = 200
    a = assign(np.arange(n), np.ones(n, bool), 4, 4, 1)
    b = assign(np.arange(n), np.ones(n, bool), 4, 4, 2)
    assert (a.shard != b.shard).any()
