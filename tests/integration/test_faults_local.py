"""Kill the local body at every named fault point; a restart must converge.

Each case copies one trained store, then runs `shardwise forget` as a real process with
SHARDWISE_FAULT naming one point of shardwise.faults. The point fires once (a marker file,
SHARDWISE_FAULT_ONCE), killing its process with os._exit — no cleanup, like SIGKILL:
the reconciler itself for control-plane points, a trainer process for trainer points
(the executor then retries it, as a Job's backoffLimit would). `shardwise reconcile` then
runs clean. The converged store must be exactly what a run without faults produces:
one new version whose weights equal the fault-free run's, bit for bit; the forgotten
sample tombstoned once; one certificate in the ledger; no duplicate job; every stored
checkpoint verifies (nothing half-written is visible); version 1 purged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from shardwise.brain.lineage import CheckpointRef
from shardwise.datasets import DatasetStore
from shardwise.faults import FAULT_EXIT_CODE, POINTS
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore

pytestmark = pytest.mark.slow

NS = "default"
DOCS = [
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "digits"},
     "spec": {"source": {"builtin": "digits", "ownersPerSample": 20}}},
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": "m"},
     "spec": {"datasetRef": "digits", "shards": 2, "slices": 2, "architecture": {"hiddenUnits": [16]},
              "training": {"epochsPerSlice": 2, "batchSize": 64, "learningRate": 0.01}}},
]
# Points the forget flow reaches (a retrain, a publish, a purge, a certificate). All of them.
FORGET_FLOW_POINTS = sorted(POINTS)


def shardwise(store: Path, tmp: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDWISE_FAULT")}
    env |= {"SHARDWISE_LOCK_DIR": str(tmp / "locks"), "SHARDWISE_FAULT_TRACE": str(tmp / "trace")}
    if fault:
        env |= {"SHARDWISE_FAULT": fault, "SHARDWISE_FAULT_ONCE": str(tmp / "fired")}
    return subprocess.run([sys.executable, "-m", "shardwise.cli", "--store", str(store), "--parallel", "2", *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained store (version 1) and the victim: a sample of slice 1 of shard 0."""
    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "all.yaml").write_text(yaml.safe_dump_all(DOCS))
    p = shardwise(tmp / "store", tmp, "apply", "-f", str(tmp / "all.yaml"))
    assert p.returncode == 0, p.stderr
    store = LocalStore(tmp / "store")
    v = DatasetStore(store, Layout(NS)).view("digits")
    a = v.assignment(2, 2, 0, True)
    victim = str(v.table.ids[np.flatnonzero((a.shard == 0) & (a.slice == 1))[0]])
    return tmp / "store", victim


def run_case(trained, tmp: Path, fault: str | None) -> tuple[LocalStore, subprocess.CompletedProcess]:
    src, victim = trained
    store_dir = tmp / "store"
    shutil.copytree(src, store_dir)
    first = shardwise(store_dir, tmp, "forget", "--dataset", "digits", "--ids", victim, "--name", "f1", fault=fault)
    again = shardwise(store_dir, tmp, "reconcile")
    assert again.returncode == 0, again.stderr
    return LocalStore(store_dir), first


def snapshot(store: LocalStore) -> dict:
    """What a converged run must agree on."""
    L = Layout(NS)
    uid = next(k for k in store.list(f"{NS}/models/m/")).split("/")[3]
    versions = sorted(k for k in store.list(L.versions("m", uid)) if k.endswith(".json"))
    current = store.get_json(L.current("m", uid))["version"]
    doc = store.get_json(L.version("m", uid, current))
    chains = [[CheckpointRef.from_dict(r) for r in chain] for chain in doc["shards"]]
    ledger = sorted(k.rsplit("/", 1)[1] for k in store.list(L.ledger()) if k.endswith(".json"))
    ds = DatasetStore(store, L)
    revs = [json.loads(store.get_bytes(L.dataset_revision("digits", r)))
            for r in range(1, ds.current_revision("digits") + 1)]
    fr = store.get_json(L.resource("forgetrequests", "f1"))
    return {
        "versions": [k.rsplit("/", 1)[1] for k in versions],
        "current": current,
        "weights": [[r.weights_sha256 for r in chain] for chain in chains],
        "jobs": sorted(j["name"] for j in doc["jobs"]),
        "ledger": ledger,
        "revisions": [r.get("change", {}).get("kind", "ingest") for r in revs],
        "forgotten": len(ds.view("digits").forgotten),
        "forget": (fr["status"]["phase"], fr["status"]["datasetRevision"]),
    }


def all_checkpoints_verify(store: LocalStore) -> list[str]:
    """Every checkpoint in the store has its meta and matches both recorded digests."""
    keys = [k for k in store.list(f"{NS}/models/") if k.endswith("/checkpoint")]
    for key in keys:
        ref = CheckpointRef.from_dict(store.get_json(key.rsplit("/", 1)[0] + "/meta.json"))
        store.get_verified(key, ref.sha256)
    return keys


def trainer_runs(tmp: Path) -> dict[str, int]:
    """How often each trainer point was passed in a case's commands: one per slice trained, so a job
    started twice (a duplicate Job) shows here even when the version records it once."""
    lines = (tmp / "trace").read_text().split()
    return {p: lines.count(p) for p in POINTS if p.startswith("trainer.")}


@pytest.fixture(scope="module")
def clean(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    store, first = run_case(trained, tmp, None)
    assert first.returncode == 0, first.stderr
    return snapshot(store), tmp_path_factory.getbasetemp(), trainer_runs(tmp)


def test_the_fault_free_run_reaches_every_fault_point(clean, trained):
    """Else a kill test below could pass without its point ever firing."""
    expected = clean[0]
    trace = Path(trained[0]).parent / "trace"  # the initial training
    reached = set(trace.read_text().split())
    for d in Path(clean[1]).glob("clean*/trace"):
        reached |= set(d.read_text().split())
    assert reached == set(POINTS), f"not reached: {sorted(set(POINTS) - reached)}"
    assert expected["current"] == 2 and expected["versions"] == ["000002.json"]
    assert len(expected["ledger"]) == 1 and expected["forget"] == ("Complete", 2)


@pytest.mark.parametrize("point", FORGET_FLOW_POINTS)
def test_killed_at_a_fault_point_a_restart_converges_to_exactly_one_new_version(point, clean, trained, tmp_path):
    store, first = run_case(trained, tmp_path, point)
    assert (tmp_path / "fired").exists(), f"{point} never fired"
    if point.startswith("trainer."):  # the trainer died; the executor retried it within the same run
        assert first.returncode == 0, first.stderr
        assert "starting it again" in first.stderr  # and said so
    else:  # the reconciler itself died, mid-step
        assert first.returncode == FAULT_EXIT_CODE, first.stderr
        assert trainer_runs(tmp_path) == clean[2], "a trainer job ran again after the restart"
    all_checkpoints_verify(store)
    assert snapshot(store) == clean[0]


def test_a_checkpoint_orphaned_by_a_killed_trainer_is_purged_by_the_next_forget(trained, tmp_path):
    """trainer.after-checkpoint on every attempt: the retrain fails, leaving a checkpoint with no
    meta.json (no lineage to judge it by). The next forget's purge removes it, and the
    whole-store scan finds nothing derived from either forgotten sample."""
    from shardwise.api import ShardedModel
    from shardwise.local.registry import Registry
    from shardwise.purge_scan import scan_for_forgotten

    src, victim = trained
    store_dir = tmp_path / "store"
    shutil.copytree(src, store_dir)
    env_fault = {"SHARDWISE_FAULT": "trainer.after-checkpoint"}
    p = subprocess.run([sys.executable, "-m", "shardwise.cli", "--store", str(store_dir), "forget", "--dataset",
                        "digits", "--ids", victim, "--name", "f1"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env_fault, "SHARDWISE_LOCK_DIR": str(tmp_path / "locks")})
    assert p.returncode != 0 and "failed" in p.stderr
    store = LocalStore(store_dir)
    orphans = [k for k in store.list(f"{NS}/models/") if k.endswith("/r000002/checkpoint")
               and not store.exists(k.rsplit("/", 1)[0] + "/meta.json")]
    assert len(orphans) == 1
    v = DatasetStore(store, Layout(NS)).view("digits")
    a = v.assignment(2, 2, 0, True)
    second = str(v.table.ids[np.flatnonzero((a.shard == 0) & (a.slice == 0) & v.state.active)[0]])
    p = shardwise(store_dir, tmp_path, "forget", "--dataset", "digits", "--ids", second, "--name", "f2")
    assert p.returncode == 0, p.stderr
    assert not store.exists(orphans[0])
    report = scan_for_forgotten(store, NS, Registry(store, NS).list(ShardedModel))
    assert report.clean, [str(f) for f in report.findings]
