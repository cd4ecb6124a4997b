"""The kopf operator against kmock (kopf's own Kubernetes API emulator, served over HTTP).

kmock stands in for the Kubernetes API server; a small "trainer stand-in" stands in
for the Job controller and the kubelet: when a Job appears it runs that Job's
container args with the real trainer entrypoint (`python -m shardwise_trainer ...`)
as a local process, then marks the Job succeeded or failed. The store is a local
folder (SHARDWISE_DEV_STORE) standing in for the S3 bucket, which has its own tests
against SeaweedFS.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

import shardwise.kube.handlers  # noqa: F401  (registers the handlers)
from shardwise.api import KINDS
from tests.helpers import dataset, forget, model

pytestmark = pytest.mark.slow
NS = "tenant-a"
G = "shardwise.io/v1alpha1"


LOGIN = str(Path(__file__).with_name("kopf_login.py"))


def declare(kmock) -> None:
    crs = {cls.PLURAL: cls.KIND for cls in KINDS.values()}  # every kind the operator lists
    for plural, kind in crs.items():
        kmock.resources[f"{G}/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=True,
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"}, subresources={"status"})
    kmock.resources["batch/v1/jobs"] = kmock.ResourceInfo(
        kind="Job", singular="job", namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "delete"}, subresources={"status"})
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", singular="event", namespaced=True,
                                                      verbs={"create", "patch", "get", "list"})
    kmock.resources["v1/secrets"] = kmock.ResourceInfo(kind="Secret", singular="secret", namespaced=True,
                                                       verbs={"get", "list", "create"})
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", singular="namespace", namespaced=False,
                                                          verbs={"get", "list", "watch"})


class Cluster:
    """The test's handle: the API (kmock), the operator task, the trainer stand-in."""

    def __init__(self, kmock, store_dir):
        self.kmock, self.store_dir = kmock, store_dir
        self.runner: KopfRunner | None = None
        self.ran: dict[str, int] = {}  # job name -> times the stand-in ran it
        self.stand_in: asyncio.Task | None = None

    async def start_operator(self) -> None:
        """The real kopf runtime, in its own thread and loop, as `kopf run` would start it."""
        self.runner = KopfRunner(["run", "--standalone", "--all-namespaces", "-m", "shardwise.kube.handlers", LOGIN])
        await asyncio.to_thread(self.runner.__enter__)
        for _ in range(200):
            if list(self.kmock[self.kmock.action.WATCH, self.kmock.resource(f"{G}/shardedmodels")]):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("kopf never opened its watch")

    async def stop_operator(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await asyncio.to_thread(runner.__exit__, None, None, None)

    async def apply(self, res) -> None:
        doc = res.to_doc()
        doc["metadata"]["namespace"] = NS
        doc["metadata"]["uid"] = f"uid-{res.name}"  # kmock sets no uid; ownerReferences need one
        doc["metadata"]["generation"] = 1
        doc["metadata"]["resourceVersion"] = "1"  # kmock sets none; kopf's patches test for it
        doc.pop("status", None)
        r = await self.kmock.post(f"/apis/{G}/namespaces/{NS}/{res.PLURAL}", json=doc)
        assert r.status in (200, 201), await r.text()

    async def get(self, plural: str, name: str) -> dict:
        r = await self.kmock.get(f"/apis/{G}/namespaces/{NS}/{plural}/{name}")
        return await r.json()

    async def jobs(self) -> list[dict]:
        r = await self.kmock.get(f"/apis/batch/v1/namespaces/{NS}/jobs")
        return (await r.json()).get("items", [])

    def open_store(self):
        from minio import Minio

        from shardwise.store import open_store
        from shardwise.store.s3 import S3Store

        if not str(self.store_dir).startswith("s3://"):
            return open_store(self.store_dir)
        client = Minio(os.environ["SHARDWISE_S3_ENDPOINT"], *self.s3_keys, secure=False)
        return S3Store(client, str(self.store_dir)[len("s3://"):])

    def job_creations(self) -> list[str]:
        return [r.data["metadata"]["name"]
                for r in self.kmock[self.kmock.action.CREATE, self.kmock.resource("batch/v1/jobs")]]

    async def run_jobs_forever(self) -> None:
        """The trainer stand-in: run each new Job's args with the real entrypoint, then mark it done."""
        while True:
            for job in await self.jobs():  # (an exception here would end the stand-in: see wait_for)
                name = job["metadata"]["name"]
                if name in self.ran or (job.get("status") or {}).get("succeeded"):
                    continue
                self.ran[name] = self.ran.get(name, 0) + 1
                container = job["spec"]["template"]["spec"]["containers"][0]
                code, err = await self.run_pod(container, {**os.environ, **await self.container_env(container)})
                status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]} if code == 0 else \
                    {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                  "message": err.decode()[-300:]}]}
                await self.set_job_status(name, status)
            await asyncio.sleep(0.1)

    @staticmethod
    async def run_pod(container: dict, env: dict[str, str]) -> tuple[int, bytes]:
        """One pod of a Job: the trainer entrypoint with the container's args; (exit code, stderr)."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "shardwise_trainer", *container["args"],
                                                    env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, err

    async def set_job_status(self, name: str, status: dict) -> None:
        """What the Job controller would write to a Job's status."""
        await self.kmock.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{name}/status", json={"status": status},
                               headers={"Content-Type": "application/merge-patch+json"})

    async def container_env(self, container: dict) -> dict[str, str]:
        """The container's env as the kubelet would set it: values, and keys of Secrets in the namespace."""
        env = {}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                r = await self.kmock.get(f"/api/v1/namespaces/{NS}/secrets/{ref['name']}")
                env[e["name"]] = base64.b64decode((await r.json())["data"][ref["key"]]).decode()
        return env

    async def wait_for(self, plural: str, name: str, pred, timeout: float = 120) -> dict:
        end = asyncio.get_running_loop().time() + timeout
        while True:
            obj = await self.get(plural, name)
            if pred(obj.get("status") or {}):
                return obj
            if self.stand_in is not None and self.stand_in.done() and self.stand_in.exception():
                raise AssertionError("the trainer stand-in crashed") from self.stand_in.exception()
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(f"{plural}/{name} never reached the state; status: {obj.get('status')}")
            await asyncio.sleep(0.2)


@pytest.fixture(params=["folder"])
async def cluster(request, kmock, tmp_path, monkeypatch):
    declare(kmock)
    monkeypatch.setenv("SHARDWISE_KUBE_HOST", str(kmock.url).rstrip("/"))
    monkeypatch.setenv("SHARDWISE_TRAINER_IMAGE", "shardwise/trainer:test")
    monkeypatch.setenv("SHARDWISE_LEADER_ELECTION", "0")  # kmock serves no Leases; tests/cluster proves election
    for var in ("SHARDWISE_DEV_STORE", "SHARDWISE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    keys = ("unused", "unused")
    if request.param == "folder":
        monkeypatch.setenv("SHARDWISE_DEV_STORE", str(tmp_path / "store"))
        store_uri = str(tmp_path / "store")
    else:  # the production path: S3, with the tenant's credentials from a Secret in its namespace
        server = request.getfixturevalue("seaweedfs")
        keys = (server.access_key, server.secret_key)
        store_uri = f"s3://op-{os.urandom(4).hex()}"
        monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", server.endpoint)
        monkeypatch.setenv("SHARDWISE_STORE_BUCKET", store_uri[len("s3://"):])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3", "namespace": NS},
              "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(keys[0].encode()).decode(),
                       "AWS_SECRET_ACCESS_KEY": base64.b64encode(keys[1].encode()).decode()}}
    assert (await kmock.post(f"/api/v1/namespaces/{NS}/secrets", json=secret)).status in (200, 201)
    c = Cluster(kmock, store_uri)
    c.s3_keys = keys  # the test itself reads the store as an admin would
    await c.start_operator()
    yield c
    await c.stop_operator()
    if c.stand_in:
        c.stand_in.cancel()
        await asyncio.gather(c.stand_in, return_exceptions=True)


def _ready(st: dict) -> bool:
    return st.get("phase") == "Ready" and st.get("accuracy") is not None


@pytest.mark.parametrize("cluster", ["folder", "s3"], indirect=True)
async def test_a_model_gets_its_jobs_becomes_ready_and_a_forget_retrains_only_affected_shards(cluster):
    await cluster.apply(dataset())
    await cluster.apply(model("m", shards=2, slices=2))
    for _ in range(100):  # the Jobs appear before anything runs them
        if len(await cluster.jobs()) == 2:
            break
        await asyncio.sleep(0.1)
    jobs = {j["metadata"]["name"]: j for j in await cluster.jobs()}
    assert set(jobs) == {"m-s0-r1-f0", "m-s1-r1-f0"}
    j = jobs["m-s1-r1-f0"]
    assert j["metadata"]["labels"].items() >= {"shardwise.io/model": "m", "shardwise.io/shard": "1",
                                              "shardwise.io/purpose": "train"}.items()
    assert j["metadata"]["ownerReferences"][0].items() >= {"kind": "ShardedModel", "name": "m", "uid": "uid-m"}.items()
    assert j["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    assert j["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    st = (await cluster.wait_for("shardedmodels", "m", lambda s: s.get("phase") == "Training"))["status"]
    assert st["shardsReadyText"] == "0/2"

    cluster.stand_in = asyncio.create_task(cluster.run_jobs_forever())
    m = await cluster.wait_for("shardedmodels", "m", _ready)
    st = m["status"]
    assert st["publishedVersion"] == 1 and st["shardsReadyText"] == "2/2" and st["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert "m-eval-v1" in cluster.ran  # accuracy came from an evaluation Job

    # a sample of shard 1 only: exactly one retrain Job, for shard 1
    from shardwise.datasets import DatasetStore
    from shardwise.store.layout import Layout

    v = DatasetStore(cluster.open_store(), Layout(NS)).view("digits")
    a = v.assignment(2, 2, 0, True)
    victim = str(v.table.ids[(a.shard == 1) & (a.slice == 1)][0])
    await cluster.apply(forget("f1", ids=[victim]))
    fr = await cluster.wait_for("forgetrequests", "f1", lambda s: s.get("phase") == "Complete")
    retrains = [j for j in await cluster.jobs() if j["metadata"]["labels"]["shardwise.io/purpose"] == "retrain"]
    assert [j["metadata"]["name"] for j in retrains] == ["m-s1-r2-f1"]
    cert = fr["status"]["certificate"]
    assert cert["models"][0]["retrainedShards"] == [{"shard": 1, "fromSlice": 1}]
    assert cert["models"][0]["versionsThatHeldSamples"] == [1]
    m = await cluster.wait_for("shardedmodels", "m", lambda s: _ready(s) and s.get("accuracyVersion") == 2)
    # an Experiment becomes an evaluation Job; its result reaches the status
    from shardwise.api import Experiment

    await cluster.apply(Experiment.model_validate({"kind": "Experiment", "metadata": {"name": "x1"},
                                                   "spec": {"modelRef": "m", "datasetRef": "digits"}}))
    x = await cluster.wait_for("experiments", "x1", lambda s: s.get("phase") == "Succeeded")
    assert x["status"]["accuracy"] == pytest.approx(m["status"]["accuracy"]) and "x1-x-v2" in cluster.ran
    (xjob,) = [j for j in await cluster.jobs() if j["metadata"]["name"] == "x1-x-v2"]
    assert [(o["kind"], o["name"]) for o in xjob["metadata"]["ownerReferences"]] == [("Experiment", "x1")]
    # an Event at each step (kmock ignores generateName, so only the first of a name is stored;
    # the requests themselves are what the operator sent)
    reasons = {r.data.get("reason") for r in cluster.kmock[cluster.kmock.action.CREATE,
                                                           cluster.kmock.resource("v1/events")]}
    assert {"JobCreated", "Published", "Purged", "Ready", "Retraining", "Complete"} <= reasons
    # every Job was created once and run once
    assert sorted(cluster.job_creations()) == sorted(set(cluster.job_creations()))
    assert all(n == 1 for n in cluster.ran.values())


async def test_a_restart_in_the_middle_creates_no_duplicate_job(cluster):
    await cluster.apply(dataset())
    await cluster.apply(model("m", shards=2, slices=2))
    for _ in range(100):
        if len(await cluster.jobs()) == 2:
            break
        await asyncio.sleep(0.1)
    await cluster.stop_operator()  # the operator dies with two Jobs in flight
    await cluster.start_operator()
    await asyncio.sleep(1.5)  # a full resume pass
    assert sorted(cluster.job_creations()) == ["m-s0-r1-f0", "m-s1-r1-f0"]
    cluster.stand_in = asyncio.create_task(cluster.run_jobs_forever())
    await cluster.wait_for("shardedmodels", "m", _ready)
    assert sorted(cluster.job_creations()) == ["m-eval-v1", "m-s0-r1-f0", "m-s1-r1-f0"]


async def test_a_bad_spec_sets_a_condition_naming_the_field(cluster):
    bad = model("broken").to_doc()
    bad["spec"]["shards"] = 0  # kmock does not validate schemas: the operator must cope
    bad["metadata"] |= {"namespace": NS, "uid": "uid-broken", "generation": 1, "resourceVersion": "1"}
    await cluster.kmock.post(f"/apis/{G}/namespaces/{NS}/shardedmodels", json=bad)
    obj = await cluster.wait_for("shardedmodels", "broken", lambda s: s.get("phase") == "Failed", timeout=30)
    cond = {c["type"]: c for c in obj["status"]["conditions"]}["Ready"]
    assert cond["reason"] == "InvalidSpec" and "spec.shards" in cond["message"]
    assert not await cluster.jobs()
    assert cluster.runner is not None and cluster.runner._thread.is_alive()  # still alive: no crash loop


async def test_deleting_a_model_honours_its_storage_policy(tmp_path):
    """The finalizer's work (the kopf on.delete handler calls this): Delete empties the prefix, Retain keeps it."""
    from shardwise.kube.body import Body
    from shardwise.kube.settings import OperatorSettings
    from shardwise.store import open_store

    store = open_store(tmp_path)
    body = Body(kube=None, settings=OperatorSettings(dev_store=str(tmp_path)))  # no API call on this path
    for policy, left in (("Retain", 1), ("Delete", 0)):
        m = model("m", storagePolicy=policy)
        m.metadata.uid, m.metadata.namespace = "u1", NS
        store.put_bytes(f"{NS}/models/m/u1/shard-0/slice-0/r000001/checkpoint", b"x")
        store.put_bytes(f"{NS}/models/other/u2/current.json", b"{}")
        await body.delete_model(m)
        assert len(store.list(f"{NS}/models/m/")) == left
        assert store.exists(f"{NS}/models/other/u2/current.json")  # never another model's objects


async def test_a_model_cannot_use_a_dataset_of_another_namespace(cluster):
    await cluster.apply(dataset())  # in tenant-a
    doc = model("intruder").to_doc()
    doc["metadata"] |= {"namespace": "tenant-b", "uid": "uid-x", "generation": 1, "resourceVersion": "1"}
    await cluster.kmock.post(f"/apis/{G}/namespaces/tenant-b/shardedmodels", json=doc)
    for _ in range(100):
        r = await cluster.kmock.get(f"/apis/{G}/namespaces/tenant-b/shardedmodels/intruder")
        st = (await r.json()).get("status") or {}
        if st.get("phase"):
            break
        await asyncio.sleep(0.1)
    # datasetRef is resolved in the model's own namespace only: tenant-a's digits is invisible
    assert st["phase"] == "Pending"
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["reason"] == "DatasetNotFound" and "Dataset 'digits' does not exist in namespace 'tenant-b'" in \
        ready["message"]
    r = await cluster.kmock.get("/apis/batch/v1/namespaces/tenant-b/jobs")
    assert not (await r.json()).get("items")


async def test_an_experiment_that_trains_creates_its_owned_model_and_tests_it(cluster, monkeypatch):
    from shardwise.api import Experiment

    # kmock stores a created object as posted; an API server gives it a uid, a resourceVersion and
    # a generation (kopf's patches and the Jobs' ownerReferences need them): add them as it would
    emulator = type(cluster.kmock)
    handle = emulator._handle

    async def like_an_api_server(self, request):
        if request.action == self.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", f"uid-created-{meta.get('name')}")
            meta.setdefault("resourceVersion", "1")
            meta.setdefault("generation", 1)
        return await handle(self, request)

    monkeypatch.setattr(emulator, "_handle", like_an_api_server)
    await cluster.apply(dataset())
    await cluster.apply(Experiment.model_validate({
        "kind": "Experiment", "metadata": {"name": "xt"},
        "spec": {"datasetRef": "digits", "train": {"shards": 2, "slices": 1,
                                                   "training": {"epochsPerSlice": 1, "batchSize": 64}}}}))
    for _ in range(100):
        created = await cluster.get("shardedmodels", "xt")
        if created.get("spec"):
            break
        await asyncio.sleep(0.1)
    # created as the Experiment's: labelled, owned (the API server deletes it with the Experiment)
    assert created["metadata"]["labels"] == {"shardwise.io/experiment": "xt"}
    assert [(o["kind"], o["name"], o["uid"]) for o in created["metadata"]["ownerReferences"]] == [
        ("Experiment", "xt", "uid-xt")]
    assert (created["spec"]["datasetRef"], created["spec"]["shards"], created["spec"]["slices"]) == ("digits", 2, 1)
    cluster.stand_in = asyncio.create_task(cluster.run_jobs_forever())
    x = await cluster.wait_for("experiments", "xt", lambda s: s.get("phase") == "Succeeded")
    assert x["status"]["model"] == "xt" and x["status"]["modelVersion"] == 1 and x["status"]["accuracy"] > 0.5


async def test_a_dataset_in_use_is_held_from_deletion_until_its_models_are_gone(cluster):
    """kopf's finalizer on Datasets (kmock honours finalizers: a DELETE sets deletionTimestamp)."""
    await cluster.apply(dataset())
    await cluster.apply(model("m", shards=2, slices=1))
    await cluster.wait_for("datasets", "digits", lambda s: s.get("phase") == "Ready")
    await cluster.apply(model("orphan", dataset="nowhere", shards=2, slices=1))
    st = (await cluster.wait_for("shardedmodels", "orphan",
                                 lambda s: any(c.get("reason") == "DatasetNotFound" for c in s.get("conditions", []))))
    assert "Dataset 'nowhere' does not exist in namespace 'tenant-a'" in str(st["status"]["conditions"])
    for _ in range(100):  # kopf puts its finalizer on first sight
        if (await cluster.get("datasets", "digits"))["metadata"].get("finalizers"):
            break
        await asyncio.sleep(0.1)
    r = await cluster.kmock.delete(f"/apis/{G}/namespaces/{NS}/datasets/digits")
    assert r.status in (200, 202)
    held = await cluster.wait_for("datasets", "digits", lambda s: any(
        c.get("type") == "Deleting" and c.get("reason") == "InUse" for c in s.get("conditions", []))
        and True)
    assert held["metadata"].get("deletionTimestamp") and "used by ShardedModel m" in str(held["status"])
    await cluster.kmock.delete(f"/apis/{G}/namespaces/{NS}/shardedmodels/m")
    await cluster.kmock.delete(f"/apis/{G}/namespaces/{NS}/shardedmodels/orphan")
    for _ in range(300):  # released within the handler's retry delay once no model names it
        r = await cluster.kmock.get(f"/apis/{G}/namespaces/{NS}/datasets/digits")
        if r.status == 404:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the Dataset was never released")
