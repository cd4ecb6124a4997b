"""Forget planning, coalescing, publish and purge decisions of the brain (pure, fast)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardwise.api.model import ShardedModelSpec, ShardedModelStatus
from shardwise.brain import lineage
from shardwise.brain.assignment import assign, sample_words
from shardwise.brain.lineage import CheckpointRef, first_stale_slice, plan_shard
from shardwise.brain.model import ModelObservation, Publish, Purge, StartJob, reconcile_model
from shardwise.brain.purge import Gone, PurgeWouldBreakServing, held_tombstones, plan_purge
from shardwise.brain.revision import DatasetState, Tombstones, resolve_ids, resolve_owner
from shardwise.brain.versions import JobRecord, VersionManifest, job_name

N, S, R = 240, 4, 4
IDS = np.array([f"s{i}" for i in range(N)])
WORDS = sample_words(0, IDS, np.full(N, ""))[0]


class State:
    """A Dataset's state for these tests: the brain sees revisions over fixed rows (a drop keeps the row,
    which is what planning sees of a forget too)."""

    def __init__(self, ds: DatasetState):
        self.ds = ds
        rs = ds.at(ds.revision)
        self.revision, self.labels, self.tombstoned_at, self.active = (rs.revision, rs.labels, rs.tombstoned_at,
                                                                       rs.active)

    def forget(self, rows):
        return State(self.ds.drop(np.asarray(rows)))

    def relabel(self, rows, labels):
        return State(self.ds.relabel(np.asarray(rows), np.asarray(labels)))


def slice_fingerprints(a, state):
    return lineage.slice_fingerprints(a, state, WORDS)


def world(seed=0):
    a = assign(WORDS, np.ones(N, bool), S, R, seed)
    return a, State(DatasetState.initial(np.arange(N) % 10))


def gone(a, state):
    d = np.flatnonzero(~state.active)
    return Gone(a.shard[d], a.slice[d], state.tombstoned_at[d])


def chains_for(a, state, tag="r1"):
    """Chains as a trainer at `state` would have written them."""
    fps = slice_fingerprints(a, state)
    out = []
    for k in range(S):
        chain = tuple(
            CheckpointRef(k, r, f"m/shard-{k}/slice-{r}/{tag}/checkpoint", f"sha{k}{r}{tag}", f"w{k}{r}{tag}",
                          tuple(fps[k][: r + 1]), tuple([state.revision] * (r + 1)))
            for r in range(R)
        )
        out.append(chain)
    return tuple(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, N - 1), min_size=1, max_size=30, unique=True), st.integers(0, 50))
def test_plan_is_minimal_rollback_to_the_earliest_affected_slice(forgotten, seed):
    a, s1 = world(seed)
    chains = chains_for(a, s1)
    s2 = s1.forget(np.array(forgotten))
    fps2 = slice_fingerprints(a, s2)
    for k in range(S):
        mine = [i for i in forgotten if a.shard[i] == k]
        plan = plan_shard(k, chains[k], fps2[k])
        if not mine:
            assert plan is None  # untouched shards are never retrained
        else:
            earliest = min(int(a.slice[i]) for i in mine)
            assert plan.from_slice == earliest  # neither earlier (waste) nor later (would keep the sample)
            assert plan.keep == chains[k][:earliest]
            assert plan.parent == (chains[k][earliest - 1] if earliest else None)


def test_relabel_is_planned_like_a_forget():
    a, s1 = world()
    chains = chains_for(a, s1)
    i = int(np.flatnonzero((a.shard == 2) & (a.slice == 3))[0])
    s2 = s1.relabel(np.array([i]), np.array([(s1.labels[i] + 1) % 10]))
    fps2 = slice_fingerprints(a, s2)
    assert [first_stale_slice(chains[k], fps2[k]) for k in range(S)] == [None, None, 3, None]


def obs(spec, state, a, published=None, jobs=(), purged=0, evaluated=None):
    return ModelObservation("m", spec, ShardedModelStatus(), 1, state.revision, slice_fingerprints(a, state),
                            published, list(jobs), purged, evaluated)


def test_first_training_starts_every_shard_within_the_parallel_limit():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R, maxParallelShards=3)
    actions, status = reconcile_model(obs(spec, s1, a))
    starts = [x for x in actions if isinstance(x, StartJob)]
    assert [x.shard for x in starts] == [0, 1, 2]
    assert all(x.from_slice == 0 and x.parent is None and x.purpose == "train" for x in starts)
    assert status.phase == "Training" and status.shardsReadyText == "0/4"


def test_finished_jobs_publish_one_version_then_purge_then_ready():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R)
    chains = chains_for(a, s1)
    jobs = [JobRecord(job_name("m", k, 1, 0), k, 0, 1, "succeeded", chains[k]) for k in range(S)]
    actions, status = reconcile_model(obs(spec, s1, a, jobs=jobs))
    assert len(actions) == 1 and isinstance(actions[0], Publish)
    assert actions[0].manifest.version == 1 and actions[0].manifest.chains == chains
    published = actions[0].manifest
    actions, _ = reconcile_model(obs(spec, s1, a, published, jobs))
    assert actions == [Purge(1)]
    actions, status = reconcile_model(obs(spec, s1, a, published, jobs, purged=1, evaluated=1))
    assert actions == [] and status.phase == "Ready" and status.publishedVersion == 1


def test_requests_arriving_while_a_shard_retrains_coalesce_into_one_follow_up():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R)
    published = VersionManifest(1, 1, chains_for(a, s1))
    in0 = np.flatnonzero(a.shard == 0)
    s2 = s1.forget(in0[:1])
    actions, _ = reconcile_model(obs(spec, s2, a, published, purged=1, evaluated=1))
    (job,) = [x for x in actions if isinstance(x, StartJob)]
    running = JobRecord(job.name, 0, job.from_slice, 2, "running", slices_done=1)
    s4 = s2.forget(in0[1:3]).forget(in0[3:5])  # two more requests while it runs
    actions, status = reconcile_model(obs(spec, s4, a, published, [running], purged=1, evaluated=1))
    assert not [x for x in actions if isinstance(x, StartJob)]  # no second job on a busy shard
    assert status.phase == "Retraining" and status.publishedVersion == 1
    assert status.retraining == [{"shard": 0, "fromSlice": job.from_slice, "slicesDone": 1}]  # progress from the store
    done = JobRecord(job.name, 0, job.from_slice, 2, "succeeded", chains_for(a, s2, "r2")[0])
    actions, _ = reconcile_model(obs(spec, s4, a, published, [done], purged=1, evaluated=1))
    follow = [x for x in actions if isinstance(x, StartJob)]
    assert len(follow) == 1 and follow[0].revision == 4  # one retrain covers both later requests


def test_waiting_shards_are_not_started_beyond_the_limit_and_take_the_newest_revision():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R, maxParallelShards=1)
    published = VersionManifest(1, 1, chains_for(a, s1))
    s2 = s1.forget(np.array([int(np.flatnonzero(a.shard == k)[0]) for k in range(S)]))
    actions, _ = reconcile_model(obs(spec, s2, a, published, purged=1, evaluated=1))
    assert len([x for x in actions if isinstance(x, StartJob)]) == 1


def test_a_failed_job_fails_the_model_with_its_message_and_is_not_relaunched():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R)
    jobs = [JobRecord(job_name("m", 0, 1, 0), 0, 0, 1, "failed", message="CUDA out of memory")]
    actions, status = reconcile_model(obs(spec, s1, a, jobs=jobs))
    assert all(x.shard != 0 for x in actions if isinstance(x, StartJob))
    assert status.phase == "Failed" and "CUDA out of memory" in status.condition("Failed").message


def test_a_corrupt_checkpoint_is_rebuilt_from_the_previous_good_one_and_reported():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R)
    chains = chains_for(a, s1)
    published = VersionManifest(1, 1, chains)
    i = int(np.flatnonzero((a.shard == 1) & (a.slice == 3))[0])
    s2 = s1.forget(np.array([i]))
    bad = chains[1][2].key  # the parent a retrain from slice 3 needs
    failed = JobRecord(job_name("m", 1, 2, 3), 1, 3, 2, "failed", message="corrupt", corrupt=bad)
    o = obs(spec, s2, a, published, [failed])
    actions, status = reconcile_model(ModelObservation(**{**o.__dict__, "corrupt": frozenset({bad})}))
    (start,) = [x for x in actions if isinstance(x, StartJob)]
    assert (start.shard, start.from_slice, start.parent) == (1, 2, chains[1][1])
    assert status.phase == "Retraining" and status.condition("Failed") is None
    c = status.condition("CheckpointCorrupt")
    assert c.status == "True" and bad in c.message and "rebuilding from slice 2" in c.message
    # the first slice corrupt: from scratch
    assert plan_shard(0, chains[0], slice_fingerprints(a, s1)[0], frozenset({chains[0][0].key})).parent is None
    # rebuilt: the condition stays on record, resolved
    redone = JobRecord(start.name, 1, 2, 2, "succeeded", chains[1][:2] + chains_for(a, s2, "r2")[1][2:])
    o = obs(spec, s2, a, published, [failed, redone])
    o.status.conditions = status.conditions
    _, status = reconcile_model(ModelObservation(**{**o.__dict__, "corrupt": frozenset({bad})}))
    c = status.condition("CheckpointCorrupt")
    assert c.status == "False" and c.reason == "Rebuilt" and bad in c.message


def test_job_names_are_deterministic_and_kubernetes_sized():
    assert job_name("m", 3, 12, 2) == "m-s3-r12-f2"
    long = job_name("x" * 63, 1023, 999999, 1023)
    assert len(long) <= 63 and long == job_name("x" * 63, 1023, 999999, 1023)
    assert job_name("x" * 63, 1, 1, 1) != job_name("x" * 62 + "y", 1, 1, 1)


def test_purge_removes_exactly_what_held_forgotten_samples():
    a, s1 = world()
    old = chains_for(a, s1)
    v1 = VersionManifest(1, 1, old)
    i = int(np.flatnonzero((a.shard == 1) & (a.slice == 2))[0])
    s2 = s1.forget(np.array([i]))
    new = list(old)
    fps2 = slice_fingerprints(a, s2)
    new[1] = old[1][:2] + tuple(
        CheckpointRef(1, r, f"m/shard-1/slice-{r}/r2/checkpoint", "x", "y", tuple(fps2[1][: r + 1]),
                      (1, 1) + (2,) * (r - 1))
        for r in (2, 3)
    )
    v2 = VersionManifest(2, 2, tuple(new))
    stored = [r for c in old for r in c] + list(new[1][2:])
    plan = plan_purge(stored, [v1, v2], 2, gone(a, s2))
    assert sorted(r.key for r in plan.checkpoints) == sorted(r.key for r in old[1][2:])
    assert plan.versions == [1] and plan.version_held[1] == sorted(r.key for r in old[1][2:])
    assert held_tombstones(new[1][3], gone(a, s2)) == set()
    with pytest.raises(PurgeWouldBreakServing):
        plan_purge(stored, [v1], 1, gone(a, s2))


def _tags(xs):
    return [f"tag-{x}".encode() for x in xs]


def test_resolution_reports_unknown_ids_and_already_forgotten_ones():
    ids = np.array(["a", "c", "d"])  # "b" was forgotten: only its tag is left
    t = Tombstones(np.array(_tags(["b"]), dtype="S64"), np.array(_tags(["q"]), dtype="S64"),
                   np.zeros(1, np.uint64), np.zeros(1, np.uint64), np.ones(1, bool), np.array([2], np.int32),
                   np.array([2], np.int32))
    r = resolve_ids(ids, ["a", "b", "zz", "a"], _tags(["a", "b", "zz", "a"]), t)
    assert r.indices.tolist() == [0] and r.already_forgotten.tolist() == [0] and r.unknown == ["zz"]
    owners = np.array(["p", "", "p"])
    assert resolve_owner(owners, "p", _tags(["p"])[0], t).indices.tolist() == [0, 2]
    q = resolve_owner(owners, "q", _tags(["q"])[0], t)
    assert q.indices.size == 0 and q.already_forgotten.tolist() == [0] and not q.unknown
    assert resolve_owner(owners, "nobody", _tags(["nobody"])[0], t).unknown == ["nobody"]


def test_a_forget_removes_rows_and_every_trace_of_their_labels_and_reads_old_revisions_without_them():
    st = DatasetState.initial(np.array([0, 1, 2, 3, 4]))
    st = st.relabel(np.array([1, 3]), np.array([9, 8]))  # revision 2
    st = st.drop(np.array([4]))  # revision 3
    gone_rows = Tombstones(np.array(_tags(["r1", "r4"]), dtype="S64"), np.array([b"", b""], dtype="S64"),
                           np.array([11, 44], np.uint64), np.array([11, 44], np.uint64), np.ones(2, bool),
                           np.zeros(2, np.int32), np.zeros(2, np.int32))
    after = st.forget(np.array([1, 4]), gone_rows)  # revision 4
    assert after.revision == 4 and after.labels.tolist() == [0, 2, 8]
    assert after.undo_row.tolist() == [2] and after.undo_old.tolist() == [3]  # row 3 is now row 2
    assert after.at(1).labels.tolist() == [0, 2, 3] and after.at(2).labels.tolist() == [0, 2, 8]
    assert after.tombstones.since.tolist() == [4, 3]  # row 4 was not trained on since its drop
    assert after.tombstones.forgotten_at.tolist() == [4, 4]
    assert not any(9 == x for x in after.undo_old.tolist() + after.labels.tolist())  # its relabel left nothing
    arrays = after.to_arrays()
    assert DatasetState.from_arrays(arrays).at(2).labels.tolist() == [0, 2, 8]


def test_fingerprints_depend_on_the_samples_not_their_rows():
    a, s1 = world()
    fps = slice_fingerprints(a, s1)
    perm = np.random.default_rng(1).permutation(N)
    from shardwise.brain.assignment import Assignment
    from shardwise.brain.revision import RevisionState

    a2 = Assignment(S, R, a.shard[perm], a.slice[perm])
    s2 = RevisionState(1, s1.labels[perm], s1.tombstoned_at[perm])
    assert lineage.slice_fingerprints(a2, s2, WORDS[perm]) == fps
    # two samples of one slice sharing a word (a collision never seen in practice) still fingerprint the same
    # whatever their row order: the labels decide their order
    words = WORDS.copy()
    i, j = np.flatnonzero((a.shard == 0) & (a.slice == 0))[:2]
    words[j] = words[i]
    labels = s1.labels.copy()
    labels[i], labels[j] = 1, 2
    st = RevisionState(1, labels, s1.tombstoned_at)
    swap = np.arange(N)
    swap[[i, j]] = swap[[j, i]]
    assert lineage.slice_fingerprints(a, st, words) == lineage.slice_fingerprints(
        Assignment(S, R, a.shard[swap], a.slice[swap]), RevisionState(1, labels[swap], s1.tombstoned_at[swap]),
        words[swap])


def test_a_job_held_by_its_queue_counts_as_started_and_the_model_waits_for_admission():
    a, s1 = world()
    spec = ShardedModelSpec(datasetRef="d", shards=S, slices=R)
    published = VersionManifest(1, 1, chains_for(a, s1))
    s2 = s1.forget(np.flatnonzero(a.shard == 0)[:1])
    actions, _ = reconcile_model(obs(spec, s2, a, published, purged=1, evaluated=1))
    (job,) = [x for x in actions if isinstance(x, StartJob)]
    held = JobRecord(job.name, 0, job.from_slice, 2, "waiting")
    actions, status = reconcile_model(obs(spec, s2, a, published, [held], purged=1, evaluated=1))
    assert not [x for x in actions if isinstance(x, StartJob)]  # not started twice while it waits
    assert status.phase == "WaitingForAdmission" and status.publishedVersion == 1
    assert status.condition("Progressing").reason == "WaitingForAdmission" and job.name in status.condition(
        "Progressing").message
    assert status.condition("Ready").status == "True"  # version 1 still serves
    admitted = JobRecord(job.name, 0, job.from_slice, 2, "running")
    _, status = reconcile_model(obs(spec, s2, a, published, [admitted], purged=1, evaluated=1))
    assert status.phase == "Retraining"
