"""The placement of samples in shards and slices: a function of seeds and each sample's own key."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shardwise.brain.assignment import assign, canonical_order, place, sample_words


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 300))
    ids = np.array([f"s{i}" for i in draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))])
    owners = np.array(draw(st.lists(st.sampled_from(["", "", "", "a", "b", "c", "d"]), min_size=n, max_size=n)))
    train = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return ids, owners, train


def _placement(ids, owners, train, shards, slices, seed, by_owner=True, dseed=0):
    id_w, group_w = sample_words(dseed, ids, owners)
    a = assign(group_w if by_owner else id_w, train, shards, slices, seed)
    return {i: (int(k), int(r)) for i, k, r in zip(ids.tolist(), a.shard, a.slice)}


@settings(max_examples=150, deadline=None)
@given(datasets(), st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**31 - 1), st.data())
def test_removing_rows_moves_no_other_sample(data, shards, slices, seed, draw):
    """The property forgetting needs: a sample's place does not depend on the rest of the list."""
    ids, owners, train = data
    full = _placement(ids, owners, train, shards, slices, seed)
    keep = np.array(draw.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids))), dtype=bool)
    part = _placement(ids[keep], owners[keep], train[keep], shards, slices, seed)
    assert all(part[i] == full[i] for i in part)
    # and not on the order of the rows either
    perm = np.random.default_rng(seed % 1000).permutation(len(ids))
    assert _placement(ids[perm], owners[perm], train[perm], shards, slices, seed) == full


@settings(max_examples=100, deadline=None)
@given(datasets(), st.integers(1, 8), st.integers(1, 6), st.integers(0, 1000))
def test_owner_groups_stay_together_and_test_samples_have_no_shard(data, shards, slices, seed):
    ids, owners, train = data
    id_w, group_w = sample_words(0, ids, owners)
    a = assign(group_w, train, shards, slices, seed)
    assert ((a.shard >= 0) == train).all() and ((a.slice >= 0) == train).all()
    assert ((a.shard < shards) & (a.slice < slices)).all()
    for o in set(owners.tolist()) - {""}:
        m = (owners == o) & train
        assert len(set(zip(a.shard[m].tolist(), a.slice[m].tolist()))) <= 1
    b = assign(id_w, train, shards, slices, seed)  # groupBy none: each sample on its own
    assert ((b.shard >= 0) == train).all()


def test_hash_placement_spreads_like_a_multinomial():
    n, shards, slices = 20_000, 8, 4
    ids = np.array([f"id-{i}" for i in range(n)])
    id_w, _ = sample_words(0, ids, np.full(n, ""))
    a = assign(id_w, np.ones(n, bool), shards, slices, 0)
    sizes = np.bincount(a.shard, minlength=shards)
    expected, sd = n / shards, np.sqrt(n * (1 / shards) * (1 - 1 / shards))
    assert np.abs(sizes - expected).max() < 5 * sd, sizes
    spread = a.spread()
    assert spread["shardSamples"] == sizes.tolist() and spread["emptyShards"] == []
    assert spread["sliceMin"] > 0.8 * n / (shards * slices) and spread["sliceMax"] < 1.2 * n / (shards * slices)


def test_seeds_change_the_placement_and_are_deterministic():
    ids = np.array([f"x{i}" for i in range(300)])
    id_w, _ = sample_words(0, ids, np.full(300, ""))
    a, b = place(id_w, 4, 4, 1), place(id_w, 4, 4, 2)
    assert (a[0] != b[0]).any()
    again = place(sample_words(0, ids, np.full(300, ""))[0], 4, 4, 1)
    assert (a[0] == again[0]).all() and (a[1] == again[1]).all()
    other_dataset_seed = sample_words(1, ids, np.full(300, ""))[0]
    assert (place(other_dataset_seed, 4, 4, 1)[0] != a[0]).any()


def test_canonical_order_is_independent_of_row_order():
    ids = np.array([f"k{i}" for i in range(50)])
    words = sample_words(3, ids, np.full(50, ""))[0]
    first = ids[canonical_order(words, ids)]
    perm = np.random.default_rng(0).permutation(50)
    assert (ids[perm][canonical_order(words[perm], ids[perm])] == first).all()
    # ties in the word (never seen in practice) fall back to the id, still independent of position
    same = np.full(50, 7, dtype=np.uint64)
    assert (ids[perm][canonical_order(same, ids[perm])] == np.sort(ids)).all()
