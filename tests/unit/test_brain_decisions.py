"""Decisions that moved out of control.py into the brain: pure, tested here without a store."""

from __future__ import annotations

from shardwise.api.model import ShardedModelStatus
from shardwise.brain.forget import waiting_for
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.purge import orphans_to_delete
from shardwise.brain.versions import JobRecord, jobs_in_version


def ref(shard: int, slc: int, key: str) -> CheckpointRef:
    return CheckpointRef(shard, slc, key, "h", "w", ("f",) * (slc + 1), (1,) * (slc + 1))


def st(published: int | None = 1, revision: int = 0, purged: int = 0, phase: str = "Ready") -> ShardedModelStatus:
    return ShardedModelStatus(phase=phase, publishedVersion=published, datasetRevision=revision, purgedRevision=purged)


def test_a_forget_waits_queued_then_held_then_retraining_and_names_a_failed_model():
    assert waiting_for(3, [("a", st(revision=3, purged=3))]) is None  # published and purged: done
    phase, msg = waiting_for(3, [("a", st(revision=3, purged=3)), ("b", None)])
    assert phase == "Queued" and msg.startswith("waiting for b ")  # b never published: its training first
    assert waiting_for(3, [("a", st(revision=2, phase="WaitingForAdmission"))])[0] == "WaitingForAdmission"
    assert waiting_for(3, [("a", st(revision=3, purged=2))])[0] == "Retraining"  # published, not yet purged
    failed = st(revision=2, phase="Failed")
    failed.set_condition("Failed", "True", "TrainerFailed", "exit code 1")
    phase, msg = waiting_for(3, [("a", failed)])
    assert phase == "Retraining" and "a failed: exit code 1 (fix it, or delete the model" in msg


def test_an_orphan_checkpoint_goes_only_when_older_than_the_revision_and_its_shard_is_idle():
    undescribed = [("k-old", 0, 1), ("k-new", 0, 3), ("k-busy", 1, 1)]
    assert orphans_to_delete(undescribed, revision=3, busy={1}) == ["k-old"]
    assert orphans_to_delete(undescribed, revision=4, busy=set()) == ["k-busy", "k-new", "k-old"]


def test_a_version_uses_every_job_that_trained_one_of_its_new_checkpoints():
    first = JobRecord("m-s0-r2-f0", 0, 0, 2, "succeeded", chain=(ref(0, 0, "a0"), ref(0, 1, "a1")))
    follow = JobRecord("m-s0-r3-f1", 0, 1, 3, "succeeded", chain=(ref(0, 0, "a0"), ref(0, 1, "b1")))
    failed = JobRecord("m-s1-r3-f0", 1, 0, 3, "failed")
    # the follow-up replaced slice 1; the first job's slice 0 is new too, so both count
    assert [j.name for j in jobs_in_version([first, follow, failed], {"a0", "b1"})] == [first.name, follow.name]
    # a job whose trained checkpoints are not in the version does not count (its kept prefix is not its work)
    assert jobs_in_version([follow], {"a0"}) == []
