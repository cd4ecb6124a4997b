"""Train, forget, retrain through the local body with real trainer processes (real torch).

Checks the two promises of the design: exactness (a rollback-and-retrain equals
training from scratch without the samples, bit for bit) and purge (nothing in
the store still holds a forgotten sample). Runs on both stores: a folder and
a real S3 server (SeaweedFS).
"""

from __future__ import annotations

import numpy as np
import pytest

from shardwise.api import ForgetRequest, ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.purge import held_tombstones
from shardwise.brain.versions import VersionManifest
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from shardwise.verify import verify_ledger
from tests.helpers import dataset, experiment, forget, model
from tests.integration.exactness import assert_exact, published, tensors  # noqa: F401 (test_relabel imports these from here)

pytestmark = pytest.mark.slow
NS = "default"


def pick_samples(runner: LocalRunner, m: ShardedModel) -> tuple[list[str], dict[int, int]]:
    """Two training samples in shard 0 (slices 1 and 2) and one in shard 1 (slice 2); shard 2 untouched."""
    v = runner.view("digits")
    a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, True)
    chosen = []
    for k, r in ((0, 1), (0, 2), (1, 2)):
        chosen.append(int(np.flatnonzero((a.shard == k) & (a.slice == r))[0]))
    return v.table.ids[chosen].tolist(), {0: 1, 1: 2}


@pytest.fixture(params=["local", "s3"])
def flow_store(request, tmp_path, monkeypatch):
    if request.param == "local":
        return request.getfixturevalue("local_store")
    server = request.getfixturevalue("seaweedfs")
    # the trainer subprocesses open the same S3 store from the URI and these variables
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    return request.getfixturevalue("s3_store")


def test_forget_is_exact_and_purged(flow_store, tmp_path):
    store = flow_store
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None, log_dir=tmp_path / "logs")
    reg.apply(dataset())
    reg.apply(model("m"))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    assert m.status.phase == "Ready" and m.status.publishedVersion == 1 and m.status.accuracy > 0.7
    before = published(store, m)

    ids, expected = pick_samples(runner, m)
    reg.apply(forget("f1", ids=ids))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    fr = reg.require(ForgetRequest, "f1")
    assert fr.status.phase == "Complete", fr.status
    after = published(store, m)
    assert after.version == 2 and m.status.publishedVersion == 2

    # only the affected shards were retrained, each from the earliest affected slice
    cert = fr.status.certificate
    (mc,) = cert["models"]
    assert {(r["shard"], r["fromSlice"]) for r in mc["retrainedShards"]} == set(expected.items())

    # exactness: a model trained from scratch on the new revision has the same weights, bit for bit
    reg.apply(model("scratch"))
    runner.run(timeout=300)
    ref = published(store, reg.require(ShardedModel, "scratch"))
    assert_exact(store, after, ref, range(3))
    # untouched shard 2 and the kept prefixes are the very same stored bytes
    assert after.chains[2] == before.chains[2]
    assert after.chains[0][:1] == before.chains[0][:1] and after.chains[1][:2] == before.chains[1][:2]

    # purge: no checkpoint, version or payload row in the store still holds a forgotten sample
    v = runner.view("digits")
    gone = v.gone(3, 3, 0, True)
    assert len(gone.since) == len(ids) == len(v.forgotten)
    L = Layout(NS)
    for key in store.list(f"{NS}/models/m/"):
        if key.endswith("/meta.json"):
            assert not held_tombstones(CheckpointRef.from_dict(store.get_json(key)), gone), key
    for key in store.list(L.versions("m", m.metadata.uid)):
        vm = VersionManifest.from_dict(store.get_json(key))
        assert all(not held_tombstones(r, gone) for c in vm.chains for r in c), key
    assert not store.exists(L.version("m", m.metadata.uid, 1))
    assert not set(ids) & set(v.table.ids.tolist())  # their rows left the payload

    # the certificate lists what was purged (now absent) and the hashes of the new checkpoints
    purged = set(mc["purgedCheckpoints"])
    assert purged == {r.key for k in (0, 1) for r in before.chains[k][expected[k]:]}
    assert all(not store.exists(k) for k in purged)
    assert mc["versionsThatHeldSamples"] == [1] and mc["publishedVersion"] == 2
    new = {c["key"]: c["sha256"] for c in mc["newCheckpoints"]}
    assert new == {r.key: r.sha256 for k in (0, 1) for r in after.chains[k][expected[k]:]}
    assert all(store.stored_sha256(k) == s for k, s in new.items())
    assert verify_ledger(store, NS) == ([], 1)

    # an Experiment tests the published version on the held-out split (the local body runs the
    # evaluation Job's code in-process)
    from shardwise.api import Experiment

    reg.apply(experiment("x1"))
    runner.run(timeout=120)
    x = reg.require(Experiment, "x1")
    assert x.status.phase == "Succeeded" and x.status.accuracy == pytest.approx(m.status.accuracy)
    assert store.get_json(x.status.reportKey)["version"] == 2
