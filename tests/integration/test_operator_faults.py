"""Fault injection in the operator: kill it at every named fault point, restart it, prove it converges.

The operator runs as a real process (`python -m kopf run ... -m shardwise.kube.handlers`)
against kmock served over HTTP, so a fault point really ends it with os._exit(86): no
finally block, no kopf cleanup, an in-flight reconcile cut in half. The trainer stand-in
of test_operator plays the Job controller too: a pod that exits 86 fails, and the Job
starts a new pod within backoffLimit (exit 86 matches no podFailurePolicy rule, so it
only counts against the limit).

Every test starts from the same baseline (a 2x2 model trained and published as
version 1 by the operator, then snapshotted: store folder plus the resources' status),
applies one ForgetRequest for a sample of shard 1 slice 0, and kills one process at
one point of that forget flow. After the restart it must end exactly like a clean run:
one new version, one ledger entry, the sample tombstoned, no Job created twice, every
checkpoint whole, the same certificate, and the retrained shard bit-identical to the
clean run's. (The evaluation Job of version 2 is created but not run: accuracy plays no
part in a forget, and each pod costs a torch import.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kmock import KubernetesEmulator, Server

from shardwise.brain import forget as fbrain
from shardwise.datasets import DatasetStore
from shardwise.faults import FAULT_EXIT_CODE, POINTS
from shardwise.store.layout import Layout
from tests.helpers import dataset, forget, model
from tests.integration.test_operator import LOGIN, NS, Cluster, G, declare

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RECONCILER = [p for p in POINTS if not p.startswith("trainer.")]
TRAINER = [p for p in POINTS if p.startswith("trainer.")]
SHAPE = {"shards": 2, "slices": 2, "epochs": 2}
UID = "uid-m"  # Cluster.apply sets uid-<name>
RETRAIN = "m-s1-r2-f0"  # the forgotten sample is in shard 1, slice 0: that shard retrains both slices
MERGE = {"Content-Type": "application/merge-patch+json"}
# What differs between two correct runs: clocks.
VOLATILE = {"requestedAt", "completedAt", "retrainSeconds"}


def pod_failure_action(job_spec: dict[str, Any], exit_code: int) -> str:
    """What the Job controller does with a pod that exited `exit_code`: the first matching rule, else Count."""
    for rule in (job_spec.get("podFailurePolicy") or {}).get("rules", []):
        on = rule.get("onExitCodes")
        if on and (exit_code in on["values"]) == (on["operator"] == "In"):
            return rule["action"]
    return "Count"


class FaultCluster(Cluster):
    """Cluster with the operator as a separate process and a stand-in that retries failed pods."""

    def __init__(self, kmock, store_dir: str, logs: Path):
        super().__init__(kmock, store_dir)
        self.s3_keys = ("unused", "unused")
        self.logs = logs
        self.env: dict[str, str] = {}  # the operator's settings on top of os.environ
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.trainer_fault: str | None = None  # armed on the first pod of the first training Job only
        self.exits: dict[str, list[int]] = {}  # job name -> exit code of each pod
        # Jobs the stand-in runs. Evaluation pods (accuracy) play no part in a forget and
        # cost a torch import each: the fault worlds leave them created but not run.
        self.purposes = {"train", "retrain", "evaluate"}

    def _environ(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("SHARDWISE_FAULT", "SHARDWISE_FAULT_TRACE", "SHARDWISE_FAULT_ACTION", "SHARDWISE_S3_ENDPOINT",
                    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(var, None)
        return env

    def _watches(self) -> int:
        return len(list(self.kmock[self.kmock.action.WATCH, self.kmock.resource(f"{G}/shardedmodels")]))

    async def start_operator(self, fault: str | None = None) -> None:
        """`kopf run` as its own process; returns once it watches (or has died already, at an early fault)."""
        self.starts += 1
        env = self._environ() | self.env | {"SHARDWISE_FAULT_TRACE": str(self.logs / f"operator-{self.starts}.trace")}
        if fault:
            env["SHARDWISE_FAULT"] = fault
        watches = self._watches()
        log = (self.logs / f"operator-{self.starts}.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "-m",
                "shardwise.kube.handlers", LOGIN, env=env, cwd=ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT)
        finally:
            log.close()  # the process has its own copy
        for _ in range(600):
            if self._watches() > watches or self.proc.returncode is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the operator never opened its watch:\n{self.log_tail()}")

    async def wait_killed(self, point: str, timeout: float = 120) -> None:
        assert self.proc is not None
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the operator never reached {point}:\n{self.log_tail()}") from None
        assert rc == FAULT_EXIT_CODE, f"the operator exited {rc}, not at {point}:\n{self.log_tail()}"
        assert f"fault point {point} fired" in self.log_tail(), self.log_tail()
        self.proc = None

    async def stop_operator(self, graceful: bool = True) -> None:
        """SIGTERM and wait (kopf takes seconds to stop), or SIGKILL when the world is thrown away."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        if not graceful:
            proc.kill()
            await proc.wait()
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def log_tail(self, n: int = 4000) -> str:
        path = self.logs / f"operator-{self.starts}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def note(self, line: str) -> None:
        """The stand-in's own log, for reading a failure."""
        with (self.logs / "pods.log").open("a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def reached(self) -> set[str]:
        """Every fault point any process of this world reached (operators and trainer pods alike)."""
        return {line for f in self.logs.glob("*.trace") for line in f.read_text().split()}

    async def run_jobs_forever(self) -> None:
        while True:
            for job in await self.jobs():
                purpose = job["metadata"]["labels"].get("shardwise.io/purpose")
                if job["metadata"]["name"] not in self.exits and purpose in self.purposes:
                    await self.run_job(job)
            await asyncio.sleep(0.1)

    async def run_job(self, job: dict[str, Any]) -> None:
        """One Job to its end, as the Job controller would: a new pod after each failure it counts."""
        name, spec = job["metadata"]["name"], job["spec"]
        container = spec["template"]["spec"]["containers"][0]
        codes = self.exits.setdefault(name, [])
        training = job["metadata"]["labels"].get("shardwise.io/purpose") in ("train", "retrain")
        while True:
            env = self._environ() | await self.container_env(container)
            env["SHARDWISE_FAULT_TRACE"] = str(self.logs / f"{name}-pod{len(codes) + 1}.trace")
            if training and self.trainer_fault:
                env["SHARDWISE_FAULT"], self.trainer_fault = self.trainer_fault, None
            code, err = await self.run_pod(container, env)
            codes.append(code)
            self.note(f"{name} pod {len(codes)} exited {code}")
            self.ran[name] = len(codes)
            failures = sum(1 for c in codes if c != 0)
            action = pod_failure_action(spec, code) if code else ""
            if code == 0:
                status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            elif action == "FailJob" or failures > spec["backoffLimit"]:
                reason = "PodFailurePolicy" if action == "FailJob" else "BackoffLimitExceeded"
                status = {"failed": failures, "conditions": [{"type": "Failed", "status": "True", "reason": reason,
                                                              "message": err.decode()[-300:]}]}
            else:  # counted against backoffLimit: the controller starts a new pod
                await self.set_job_status(name, {"failed": failures, "active": 1})
                continue
            await self.set_job_status(name, status)
            return

    async def restore(self, plural: str, res, status: dict[str, Any]) -> None:
        """A resource as an earlier operator left it: applied, then its status written."""
        await self.apply(res)
        r = await self.kmock.patch(f"/apis/{G}/namespaces/{NS}/{plural}/{res.name}/status",
                                   json={"status": status}, headers=MERGE)
        assert r.status == 200, await r.text()


@contextlib.asynccontextmanager
async def world(root: Path) -> AsyncIterator[FaultCluster]:
    """A fresh API server (kmock over HTTP), store folder and trainer stand-in; no operator yet."""
    async with KubernetesEmulator() as kmock, Server(kmock):
        declare(kmock)
        (root / "logs").mkdir(parents=True)
        c = FaultCluster(kmock, str(root / "store"), root / "logs")
        c.env = {"SHARDWISE_KUBE_HOST": str(kmock.url).rstrip("/"), "SHARDWISE_DEV_STORE": c.store_dir,
                 "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test",
                 "SHARDWISE_LEADER_ELECTION": "0"}  # kmock serves no Leases; tests/cluster proves election
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3", "namespace": NS},
                  "data": {k: base64.b64encode(b"unused").decode() for k in ("AWS_ACCESS_KEY_ID",
                                                                            "AWS_SECRET_ACCESS_KEY")}}
        assert (await kmock.post(f"/api/v1/namespaces/{NS}/secrets", json=secret)).status in (200, 201)
        c.stand_in = asyncio.create_task(c.run_jobs_forever())
        try:
            yield c
        finally:
            await c.stop_operator(graceful=False)
            c.stand_in.cancel()
            await asyncio.gather(c.stand_in, return_exceptions=True)


def _ready(version: int):
    return lambda s: s.get("phase") == "Ready" and s.get("publishedVersion") == version


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, Any]:
    """The baseline and the clean run's outcome, built once by the first test that needs them."""
    return {"dir": tmp_path_factory.mktemp("operator-faults")}


async def baseline(cache: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of a 2x2 model, trained and published by the operator; and the sample to forget."""
    if "baseline" not in cache:
        root = cache["dir"] / "baseline"
        async with world(root) as c:
            await c.apply(dataset())
            await c.apply(model("m", **SHAPE))
            await c.start_operator()
            await c.wait_for("shardedmodels", "m", lambda s: _ready(1)(s) and s.get("accuracyVersion") == 1,
                             timeout=240)
            await c.stop_operator()
            statuses = {p: (await c.get(p, n))["status"] for p, n in (("datasets", "digits"),
                                                                        ("shardedmodels", "m"))}
        m = model("m", **SHAPE)
        v = DatasetStore(c.open_store(), Layout(NS)).view("digits")
        a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
        victim = str(v.table.ids[(a.shard == 1) & (a.slice == 0)][0])
        cache["baseline"] = {"store": root / "store", "statuses": statuses, "victims": [victim]}
    return cache["baseline"]


async def forget_flow(c: FaultCluster, base: dict[str, Any], fault: str | None = None) -> None:
    """Restore the baseline, forget one sample, kill at `fault` if given, restart, wait for convergence."""
    shutil.copytree(base["store"], c.store_dir)
    c.purposes = {"train", "retrain"}
    await c.restore("datasets", dataset(), base["statuses"]["datasets"])
    await c.restore("shardedmodels", model("m", **SHAPE), base["statuses"]["shardedmodels"])
    await c.apply(forget("f1", ids=base["victims"]))
    if fault in RECONCILER:
        await c.start_operator(fault)
        await c.wait_killed(fault)
    elif fault in TRAINER:
        c.trainer_fault = fault
    await c.start_operator()
    await c.wait_for("forgetrequests", "f1", lambda s: s.get("phase") == "Complete", timeout=180)
    await c.wait_for("shardedmodels", "m", _ready(2), timeout=60)


async def outcome(c: FaultCluster, victims: list[str]) -> dict[str, Any]:
    """Check the invariants every converged run must hold; return what must equal the clean run's."""
    store, L = c.open_store(), Layout(NS)
    fr = (await c.get("forgetrequests", "f1"))["status"]
    st = (await c.get("shardedmodels", "m"))["status"]
    # the request: complete, attributed to the revision that tombstoned its sample, certified once
    assert (fr["phase"], fr["datasetRevision"], fr["samples"], fr["alreadyForgotten"]) == ("Complete", 2,
                                                                                          len(victims), 0), fr
    entries = [store.get_json(k) for k in sorted(store.list(L.ledger()))]
    assert [e["certificate"]["request"] for e in entries] == ["f1"], "one ledger entry per request"
    assert fbrain.verify_chain(entries) == []
    cert = {k: v for k, v in fr["certificate"].items() if k != "ledgerEntry"}
    assert cert == entries[0]["certificate"], "the status shows the certificate the ledger holds"
    # the sample: forgotten in the current revision (its row gone, a tombstone left), and nothing else
    v = DatasetStore(store, L).view("digits")
    assert not np.isin(v.table.ids, victims).any() and v.state.revision == 2
    assert v.forgotten.forgotten_at.tolist() == [2] * len(victims) and v.state.active.all()
    # the versions: one line, exactly one new version (version 1 held the sample and is purged)
    assert store.get_json(L.current("m", UID))["version"] == 2 and st["publishedVersion"] == 2
    assert store.list(L.versions("m", UID)) == [L.version("m", UID, 2)]
    published = {r.data.get("message") for r in c.kmock[c.kmock.action.CREATE, c.kmock.resource("v1/events")]
                 if r.data.get("reason") == "Published"}
    assert published <= {"version 2"}, published
    # the Jobs: each created once
    created = c.job_creations()
    assert len(created) == len(set(created)), f"a Job was created twice: {sorted(created)}"
    # the checkpoints: every stored one whole and described; every published one there and verified
    manifest = store.get_json(L.version("m", UID, 2))
    assert manifest["previousVersion"] == 1, "version 2 follows version 1"
    for chain in manifest["shards"]:
        for ref in chain:
            store.get_verified(ref["key"], ref["sha256"])
    ckpts = [k for k in store.list(L.model("m", UID) + "/") if k.endswith("/checkpoint")]
    for key in ckpts:
        store.get_verified(key, store.get_json(L.checkpoint_meta(key))["sha256"])
    assert not [p for p in Path(c.store_dir).rglob(".tmp-*")], "a half-written file is left in the store"
    return {
        "jobs": sorted(created),
        "chains": [[(r["key"], r["sha256"], r["weightsSha256"]) for r in chain] for chain in manifest["shards"]],
        "checkpoints": sorted(ckpts),
        "certificate": {k: v for k, v in cert.items() if k not in VOLATILE}
        | {"models": [{k: v for k, v in mm.items() if k not in VOLATILE} for mm in cert["models"]]},
    }


def same_as_clean(got: dict[str, Any], clean: dict[str, Any]) -> None:
    for field, want in clean.items():  # one field at a time: the failure names what differs
        assert got[field] == want, field


async def reference(cache: dict[str, Any]) -> dict[str, Any]:
    """The clean forget run (no fault), with every process tracing the fault points it reaches."""
    if "reference" not in cache:
        base = await baseline(cache)
        async with world(cache["dir"] / "reference") as c:
            await forget_flow(c, base)
            cache["reference"] = {"reached": c.reached(), "outcome": await outcome(c, base["victims"]),
                                  "exits": dict(c.exits)}
    return cache["reference"]


async def test_a_clean_forget_reaches_every_fault_point(cache):
    ref = await reference(cache)
    covered = sorted(set(POINTS) & ref["reached"])
    print(f"fault points covered: {len(covered)}/{len(POINTS)}")
    assert covered == sorted(POINTS), f"never reached: {sorted(set(POINTS) - ref['reached'])}"
    assert ref["outcome"]["jobs"] == ["m-eval-v2", RETRAIN]
    assert ref["exits"] == {RETRAIN: [0]}
    cert = ref["outcome"]["certificate"]["models"][0]
    assert cert["versionsThatHeldSamples"] == [1] and cert["retrainedShards"] == [{"shard": 1, "fromSlice": 0}]
    assert len(cert["purgedCheckpoints"]) == 2  # shard 1's slices 0 and 1 at revision 1


@pytest.mark.parametrize("point", RECONCILER)
async def test_the_operator_killed_at_a_fault_point_converges_after_a_restart(point, cache, tmp_path):
    ref = await reference(cache)
    base = await baseline(cache)
    async with world(tmp_path) as c:
        await forget_flow(c, base, fault=point)
        got = await outcome(c, base["victims"])
        assert c.exits[RETRAIN] == [0], "the retrain ran once"
    same_as_clean(got, ref["outcome"])


@pytest.mark.parametrize("point", TRAINER)
async def test_a_trainer_pod_killed_at_a_fault_point_is_retried_and_redoes_the_slice(point, cache, tmp_path):
    ref = await reference(cache)
    base = await baseline(cache)
    async with world(tmp_path) as c:
        await forget_flow(c, base, fault=point)
        got = await outcome(c, base["victims"])
        assert c.exits[RETRAIN] == [FAULT_EXIT_CODE, 0], c.exits
        spec = next(j["spec"] for j in await c.jobs() if j["metadata"]["name"] == RETRAIN)
        # the Job's own podFailurePolicy is what made the stand-in retry: 86 counts, 2 would fail the Job
        assert (pod_failure_action(spec, FAULT_EXIT_CODE), pod_failure_action(spec, 2)) == ("Count", "FailJob")
        first = (c.logs / f"{RETRAIN}-pod1.trace").read_text().split()
        second = (c.logs / f"{RETRAIN}-pod2.trace").read_text().split()
    assert first[-1] == point  # the first pod died there
    # the second pod starts again from the job's first slice: slice 0 is redone, then slice 1
    assert second.count("trainer.after-checkpoint") == second.count("trainer.after-slice") == SHAPE["slices"]
    same_as_clean(got, ref["outcome"])  # bit-identical: nothing of the dead pod leaked in
