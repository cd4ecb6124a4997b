"""Forgets that overlap: with each other, with first training, with a retrain, and two reconcilers.

Real trainer processes through the local body (a 2 x 3 digits MLP). Timing is
controlled, not slept: the test drives LocalRunner.step() by hand, and to make
"a forget arrives while job X runs" certain it freezes X's process (SIGSTOP)
while the request is filed and accepted, then lets it go on (SIGCONT).

What the brain promises (brain/model.py) and these tests hold it to:
- pending requests of one dataset are tombstoned in ONE revision, so two requests
  in one shard cost one retrain of it, from the earlier slice;
- one job per shard at a time: a change that lands while a shard's job runs waits
  for it and folds into at most one follow-up job (from the first stale slice);
- a version is published only when every shard's chain matches the current
  revision, so no version published after a request is accepted holds its samples;
- in every case the published model equals training from scratch without the samples.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.purge import held_tombstones
from shardwise.brain.versions import VersionManifest
from shardwise.local.lock import ReconcilerLock
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise.verify import verify_ledger
from tests.helpers import dataset, forget, model
from tests.integration.exactness import NS, assert_exact, published, version_doc

pytestmark = pytest.mark.slow
SHARDS, SLICES = 2, 3
JOB = re.compile(r"-s(\d+)-r(\d+)-f(\d+)$")


# -- helpers -------------------------------------------------------------------------
class Rig:
    """A registry, a runner, and a record of every trainer process the runner starts."""

    def __init__(self, store: Store, tmp: Path):
        self.store = store
        self.reg = Registry(store, NS)
        self.log_dir = tmp / "logs"
        self.runner = LocalRunner(store, NS, parallel=2, log=lambda m: None, log_dir=self.log_dir)
        self.started: list[tuple[str, int]] = []  # (job name, attempt)
        start = self.runner.executor.start

        def counting_start(name: str, request_key: str, attempt: int = 1) -> None:
            if name not in self.runner.executor.procs:
                self.started.append((name, attempt))
            start(name, request_key, attempt)

        self.runner.executor.start = counting_start  # type: ignore[method-assign]

    def jobs(self, shard: int | None = None) -> list[str]:
        """Job names started (first attempts), in order; optionally of one shard."""
        return [n for n, a in self.started if a == 1 and (shard is None or int(JOB.search(n)[1]) == shard)]

    def step_until(self, done: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.perf_counter() + timeout
        while not done():
            assert time.perf_counter() < deadline, "condition not reached"
            self.runner.poll()
            if not self.runner.step():
                self.runner.executor.wait(0.1)

    def running(self, job: str) -> bool:
        return job in self.runner.executor.procs and self.runner.executor.procs[job].poll() is None

    @contextmanager
    def frozen(self, job: str) -> Iterator[None]:
        """Hold a running trainer still, so whatever happens meanwhile happens *during* the job."""
        pid = self.runner.executor.procs[job].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def model(self, name: str = "m") -> ShardedModel:
        return self.reg.require(ShardedModel, name)

    def request(self, name: str) -> ForgetRequest:
        return self.reg.require(ForgetRequest, name)

    def train(self, name: str = "m", **spec) -> VersionManifest:
        self.reg.apply(model(name, shards=SHARDS, slices=SLICES, **spec))
        self.runner.run(timeout=300)
        m = self.model(name)
        assert m.status.phase == "Ready", m.status
        return published(self.store, m)

    def sample(self, shard: int, slice_: int, nth: int = 0) -> str:
        """The id of a training sample in (shard, slice) of the test model's grid."""
        v = self.runner.view("digits")
        a = v.assignment(SHARDS, SLICES, 0, True)
        return str(v.table.ids[np.flatnonzero((a.shard == shard) & (a.slice == slice_) & v.state.active)[nth]])

    def versions(self, name: str = "m") -> list[int]:
        m = self.model(name)
        L = Layout(NS)
        return sorted(int(k.rsplit("/", 1)[1][:-5]) for k in self.store.list(L.versions(m.name, m.metadata.uid))
                      if k.endswith(".json"))


@pytest.fixture
def rig(local_store, tmp_path) -> Iterator[Rig]:
    r = Rig(local_store, tmp_path)
    r.reg.apply(dataset())
    yield r
    r.runner.executor.stop_all()  # a test that failed mid-step leaves no trainer behind


def accepted(rig: Rig, name: str) -> bool:
    st = rig.request(name).status
    return st is not None and st.datasetRevision is not None


def certificate(rig: Rig, name: str) -> dict:
    fr = rig.request(name)
    assert fr.status.phase == "Complete", fr.status
    (mc,) = [c for c in fr.status.certificate["models"] if c["model"] == "m"]
    return mc


def assert_nothing_holds_forgotten(rig: Rig) -> None:
    """No stored checkpoint or version of m was trained on a forgotten sample."""
    m, v = rig.model(), rig.runner.view("digits")
    gone = v.gone(SHARDS, SLICES, 0, True)
    assert len(gone.since) == len(v.forgotten) + int((~v.state.active).sum())  # every forgotten sample judged
    for key in rig.store.list(f"{NS}/models/m/"):
        if key.endswith("/meta.json"):
            assert not held_tombstones(CheckpointRef.from_dict(rig.store.get_json(key)), gone), key
    for n in rig.versions():
        vm = VersionManifest.from_dict(version_doc(rig.store, m, n))
        assert all(not held_tombstones(r, gone) for c in vm.chains for r in c), n


def assert_equals_scratch(rig: Rig, got: VersionManifest) -> None:
    """The published model equals one trained from scratch on the current revision, every shard."""
    ref = rig.train("scratch")
    assert ref.revision == got.revision == rig.runner.view("digits").state.revision
    assert_exact(rig.store, got, ref, range(SHARDS))


# -- 1. two requests, one shard, at once ---------------------------------------------------
def test_two_requests_in_one_shard_share_one_revision_and_one_retrain(rig):
    before = rig.train()
    trained = len(rig.started)
    a, b = rig.sample(0, 1), rig.sample(0, 2)
    rig.reg.apply(forget("fa", ids=[a]))
    rig.reg.apply(forget("fb", ids=[a, b]))  # overlapping: both name sample a
    rig.runner.run(timeout=300)

    # one revision tombstones both
    assert rig.request("fa").status.datasetRevision == rig.request("fb").status.datasetRevision == 2
    assert rig.reg.require(Dataset, "digits").status.revision == 2
    change = rig.store.get_json(Layout(NS).dataset_revision("digits", 2))["change"]
    assert change["kind"] == "forget" and sorted(r["name"] for r in change["requests"]) == ["fa", "fb"] \
        and change["samples"] == 2
    assert (rig.request("fa").status.samples, rig.request("fb").status.samples) == (1, 2)
    # one retrain, of shard 0 only, from the earlier of the two slices
    assert rig.jobs()[trained:] == ["m-s0-r2-f1"]
    assert all(att == 1 for _, att in rig.started)
    after = published(rig.store, rig.model())
    assert after.version == 2 and rig.versions() == [2]
    assert [(j["shard"], j["fromSlice"]) for j in version_doc(rig.store, rig.model())["jobs"]] == [(0, 1)]
    # both certificates point at the same model version
    ca, cb = certificate(rig, "fa"), certificate(rig, "fb")
    assert ca["publishedVersion"] == cb["publishedVersion"] == 2
    assert ca["versionsThatHeldSamples"] == cb["versionsThatHeldSamples"] == [1]
    assert ca["retrainedShards"] == cb["retrainedShards"] == [{"shard": 0, "fromSlice": 1}]
    assert after.chains[1] == before.chains[1] and after.chains[0][:1] == before.chains[0][:1]
    assert_nothing_holds_forgotten(rig)
    assert_equals_scratch(rig, after)
    assert verify_ledger(rig.store, NS) == ([], 2)


# -- 2. a forget during first training ------------------------------------------------------
def test_forget_during_first_training_is_never_published(rig):
    rig.reg.apply(model("m", shards=SHARDS, slices=SLICES))
    first = "m-s0-r1-f0"
    rig.step_until(lambda: rig.running(first))
    x = rig.sample(0, 1)
    with rig.frozen(first):
        rig.reg.apply(forget("early", ids=[x]))
        rig.step_until(lambda: accepted(rig, "early"))
        assert rig.request("early").status.datasetRevision == 2
        assert rig.running(first), "the forget must land while shard 0's first job runs"
        # nothing can be published while a shard is stale, and no second job starts on a busy shard
        for _ in range(3):
            rig.runner.step()
        assert rig.jobs(0) == [first] and rig.versions() == []
    rig.runner.run(timeout=300)

    # The brain publishes only chains that match the current revision: the first version is
    # already at revision 2, so no published version ever held the sample.
    m = rig.model()
    assert m.status.phase == "Ready" and rig.versions() == [1]
    v1 = published(rig.store, m)
    assert v1.version == 1 and v1.revision == 2
    # shard 0 finished its revision-1 run, then ONE follow-up from the sample's slice reused its
    # slice-0 checkpoint; shard 1 (untouched) kept its revision-1 chain
    assert rig.jobs(0) == [first, "m-s0-r2-f1"] and rig.jobs(1) == ["m-s1-r1-f0"]
    assert v1.chains[0][0].revisions == (1,) and v1.chains[0][1].revisions == (1, 2)
    # the version records every job whose checkpoints it holds, shard 0's first run (slice 0 kept) included
    assert sorted(j["name"] for j in version_doc(rig.store, m)["jobs"]) == [first, "m-s0-r2-f1", "m-s1-r1-f0"]
    cert = certificate(rig, "early")
    assert cert["publishedVersion"] == 1 and cert["versionsThatHeldSamples"] == []
    if "superseded" in (rig.log_dir / f"{first}.log").read_text():
        # frozen before it read its data: it found the sample forgotten and trained slice 0 only, which
        # never held it; nothing to purge
        assert cert["purgedCheckpoints"] == []
    else:  # it read its data first: its revision-1 checkpoints of slices 1..2 held the sample, purged
        assert len(cert["purgedCheckpoints"]) == 2
    assert all(not rig.store.exists(k) for k in cert["purgedCheckpoints"])
    assert_nothing_holds_forgotten(rig)
    assert_equals_scratch(rig, v1)


# -- 3. a forget during a retrain ----------------------------------------------------------
def test_forget_during_a_retrain_folds_into_one_follow_up(rig):
    before = rig.train()
    rig.reg.apply(forget("f1", ids=[rig.sample(0, 1)]))
    retrain = "m-s0-r2-f1"
    rig.step_until(lambda: rig.running(retrain))
    with rig.frozen(retrain):
        rig.reg.apply(forget("f2", ids=[rig.sample(0, 2)]))
        rig.step_until(lambda: accepted(rig, "f2"))
        assert rig.request("f2").status.datasetRevision == 3
        assert rig.running(retrain), "the second forget must land while the first retrain runs"
        for _ in range(3):
            rig.runner.step()
        m = rig.model()
        assert m.status.phase == "Retraining" and m.status.publishedVersion == 1
        assert rig.jobs(0)[-1] == retrain  # shard 0 is busy: the change waits
    rig.runner.run(timeout=300)

    # exactly one follow-up for shard 0, from the first slice stale at revision 3; shard 1 untouched
    assert rig.jobs(0)[-2:] == [retrain, "m-s0-r3-f2"] and len(rig.jobs(0)) == 3
    assert rig.jobs(1) == ["m-s1-r1-f0"]
    # one new version, at revision 3: no version at revision 2 was published in between
    after = published(rig.store, rig.model())
    assert after.version == 2 and after.revision == 3 and rig.versions() == [2]
    assert after.chains[1] == before.chains[1] and after.chains[0][:1] == before.chains[0][:1]
    # the follow-up built on the first retrain's slice-1 checkpoint
    assert after.chains[0][1].revisions == (1, 2) and after.chains[0][2].revisions == (1, 2, 3)
    c1, c2 = certificate(rig, "f1"), certificate(rig, "f2")
    assert c1["publishedVersion"] == c2["publishedVersion"] == 2
    assert c1["versionsThatHeldSamples"] == c2["versionsThatHeldSamples"] == [1]
    # the version's work, as certified: shard 0 retrained from slice 1 (f1's sample), then slice 2
    jobs = version_doc(rig.store, rig.model())["jobs"]
    assert sorted((j["shard"], j["fromSlice"]) for j in jobs) == [(0, 1), (0, 2)]
    assert {"shard": 0, "fromSlice": 1} in c1["retrainedShards"]
    assert_nothing_holds_forgotten(rig)
    assert_equals_scratch(rig, after)
    assert verify_ledger(rig.store, NS) == ([], 2)


# -- 3b. a change for a shard still waiting its turn -----------------------------------------
def test_a_waiting_shard_starts_at_the_newest_revision(rig):
    before = rig.train(maxParallelShards=1)  # one shard at a time: the other waits its turn
    rig.reg.apply(forget("f1", ids=[rig.sample(0, 1), rig.sample(1, 2)]))
    busy = "m-s0-r2-f1"
    rig.step_until(lambda: rig.running(busy))
    with rig.frozen(busy):
        rig.reg.apply(forget("f2", ids=[rig.sample(1, 1)]))
        rig.step_until(lambda: accepted(rig, "f2"))
        assert rig.request("f2").status.datasetRevision == 3 and rig.running(busy)
        for _ in range(3):
            rig.runner.step()
        # shard 1 never started at revision 2; its queued work now starts from f2's earlier slice
        assert rig.jobs(1) == ["m-s1-r1-f0"]
        assert {"shard": 1, "fromSlice": 1} in rig.model().status.retraining
    rig.runner.run(timeout=300)

    # one job per affected shard: shard 0 at revision 2 (f2 does not touch it), shard 1 at revision 3
    assert rig.jobs(0)[1:] == [busy] and rig.jobs(1)[1:] == ["m-s1-r3-f1"]
    after = published(rig.store, rig.model())
    assert after.version == 2 and after.revision == 3 and rig.versions() == [2]
    assert after.chains[0][:1] == before.chains[0][:1] and after.chains[1][:1] == before.chains[1][:1]
    assert certificate(rig, "f1")["publishedVersion"] == certificate(rig, "f2")["publishedVersion"] == 2
    assert_nothing_holds_forgotten(rig)
    assert_equals_scratch(rig, after)


# -- 4. two reconcilers at once ----------------------------------------------------------
def _cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "shardwise.cli", "--store", str(store), "--parallel", "2", *args]


def test_two_reconcilers_never_both_act(local_store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDWISE_LOCK_DIR", str(tmp_path / "locks"))
    env = {**os.environ}
    reg = Registry(local_store, NS)
    reg.apply(dataset())
    reg.apply(model("m", shards=SHARDS, slices=SLICES, epochs=6))

    # A reconciler that finds the lock held leaves without touching the store.
    held = ReconcilerLock(local_store.uri, NS)
    assert held.acquire()
    try:
        keys = set(local_store.list(""))
        p = subprocess.run(_cli(local_store.root, "reconcile"), env=env, capture_output=True, text=True, timeout=60,
                           check=False)
        assert p.returncode == 0, p.stderr
        assert f"queued: reconciler pid {os.getpid()} is running" in p.stderr
        assert set(local_store.list("")) == keys
    finally:
        held.release()

    # Two started at the same instant: exactly one reconciles, the other is queued and exits.
    procs = [subprocess.Popen(_cli(local_store.root, "reconcile"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    queued = [e for e in errs if "queued: reconciler pid" in e]
    worked = [e for e in errs if "queued: reconciler pid" not in e]
    assert len(queued) == 1 and len(worked) == 1, errs
    assert "(job " not in queued[0] and "published" not in queued[0]
    started = re.findall(r"\(job (\S+)\)", worked[0])
    assert sorted(started) == ["m-s0-r1-f0", "m-s1-r1-f0"]  # each job once
    m = reg.require(ShardedModel, "m")
    assert m.status.phase == "Ready" and m.status.publishedVersion == 1
    assert sorted(j["name"] for j in version_doc(local_store, m)["jobs"]) == sorted(started)
