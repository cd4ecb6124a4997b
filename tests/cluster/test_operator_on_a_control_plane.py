"""The operator on a real control plane, with the chart's own RBAC, S3 (SeaweedFS) credentials from the
tenant's Secret, and Pods run by the test's kubelet through the real trainer entrypoint.

Scenarios: examples/digits trained and forgotten, then `verify --scan` clean; a trainer Pod exiting
with code 2 fails its Job at once (podFailurePolicy) while other failures are retried
(backoffLimit); the operator killed and restarted mid-retrain creates no duplicate Job; deleting a
ShardedModel garbage-collects its Jobs (ownerReferences, the real garbage collector).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from shardwise.api import ShardedModel
from shardwise.cli import main
from shardwise.purge_scan import scan_for_forgotten
from shardwise.store.s3 import S3Store
from tests.cluster.controlplane import REPO, kubeconfig
from tests.cluster.kube import Kube
from tests.cluster.kubelet import Kubelet

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
helm = pytest.importorskip("helm_python.chart", reason="helm-python-sdk renders the chart's RBAC")
RELEASE, SYSTEM = "shardwise", "shardwise-system"


def chart_rbac(kube: Kube) -> str:
    """Apply the chart's ServiceAccount, ClusterRoles (the operator's and people's), bindings and admission
    policy as rendered; a token of the operator's account."""
    files = helm.Chart.load(str(REPO / "charts" / "shardwise")).render(
        {"store": {"endpoint": "http://unused:9000"}}, name=RELEASE, namespace=SYSTEM, is_install=True)
    docs = [d for path, text in files.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    kube.namespace(SYSTEM)
    paths = {"ServiceAccount": f"/api/v1/namespaces/{SYSTEM}/serviceaccounts",
             "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
             "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
             "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
             "ValidatingAdmissionPolicyBinding":
                 "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
             "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{SYSTEM}/roles",
             "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{SYSTEM}/rolebindings"}
    sa = None
    for d in docs:
        if d["kind"] in paths:
            kube.apply(f"{paths[d['kind']]}/{d['metadata']['name']}", d)
            sa = d["metadata"]["name"] if d["kind"] == "ServiceAccount" else sa
    assert sa, "the chart renders a ServiceAccount"
    tr = kube.post(f"/api/v1/namespaces/{SYSTEM}/serviceaccounts/{sa}/token",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600}})
    return tr["status"]["token"]


class Operator:
    """`shardwise operator` as a process, with a kubeconfig carrying the chart's ServiceAccount token."""

    def __init__(self, control_plane, token: str, env: dict[str, str], tmp: Path, args: tuple[str, ...] = ()):
        self.args = ["operator", *args]
        self.kc = tmp / "operator.kubeconfig"
        self.kc.write_text(kubeconfig(control_plane.url, token, "shardwise-operator"))
        # its own Lease unless told: each test's operator leads at once, whatever an earlier test left
        self.env = {**os.environ, "SHARDWISE_LEASE_NAMESPACE": SYSTEM,
                    "SHARDWISE_LEASE_NAME": f"op-{uuid.uuid4().hex[:8]}", **env, "KUBECONFIG": str(self.kc)}
        self.log = tmp / "operator.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", f"from shardwise.cli import main; main({self.args!r})"],
                                     env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        return self.text()[-3000:]


@pytest.fixture
def cluster(control_plane, kube, seaweedfs, tmp_path):
    ns = f"team-{uuid.uuid4().hex[:6]}"
    kube.namespace(ns)
    bucket = f"cp-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().make_bucket(bucket)
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}})
    op = Operator(control_plane, chart_rbac(kube), {
        "SHARDWISE_S3_ENDPOINT": seaweedfs.endpoint, "SHARDWISE_STORE_BUCKET": bucket,
        "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test", "SHARDWISE_RESYNC_SECONDS": "5",
        "SHARDWISE_TRAINER_BACKOFF_LIMIT": "2"}, tmp_path)
    kubelet = Kubelet(kube, ns)
    op.start()
    kubelet.start()
    store = S3Store(seaweedfs.client(), bucket, "")
    yield kube, ns, op, kubelet, store
    kubelet.stop()
    op.kill()


def examples(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / "examples" / "digits" / name).read_text()) if d]


def status(kube: Kube, ns: str, kind: str, name: str) -> dict:
    return kube.get(kube.cr(ns, kind, name)).get("status") or {}


def jobs(kube: Kube, ns: str) -> dict[str, dict]:
    return {j["metadata"]["name"]: j for j in kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]}


def test_digits_trained_and_forgotten_with_the_charts_rbac_and_the_scan_is_clean(cluster, seaweedfs, tmp_path,
                                                                                 monkeypatch, capsys):
    kube, ns, op, kubelet, store = cluster
    for d in examples("01-dataset.yaml") + examples("02-model.yaml"):
        kube.apply_cr(ns, d)
    model = examples("02-model.yaml")[0]["metadata"]["name"]
    try:
        st = kube.wait("model Ready", lambda: (s := status(kube, ns, "ShardedModel", model)).get("phase") == "Ready"
                       and s.get("accuracy") is not None and s, timeout=600)
    except AssertionError:
        raise AssertionError(f"{op.tail()}\nkubelet: {kubelet.errors}") from None
    assert st["publishedVersion"] == 1 and kubelet.errors == []
    # `kubectl get swm` shows the accuracy as it should be read: the Table the API server serves for it
    table = kube.request("GET", kube.cr(ns, "ShardedModel"), accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    names = [c["name"] for c in table["columnDefinitions"]]
    (row,) = table["rows"]
    shown = row["cells"][names.index("Accuracy")]
    assert shown == st["accuracy"] and len(repr(shown).split(".")[1]) <= 4, (names, row["cells"])
    trained = set(jobs(kube, ns))
    forget = examples("03-forget.yaml")[0]
    kube.apply_cr(ns, forget)
    fr = kube.wait("forget Complete", lambda: (s := status(kube, ns, "ForgetRequest", forget["metadata"]["name"]))
                   .get("phase") == "Complete" and s, timeout=600)
    (mc,) = fr["certificate"]["models"]
    retrains = {n: j for n, j in jobs(kube, ns).items() if n not in trained
                and j["metadata"]["labels"].get("shardwise.io/purpose") == "retrain"}
    assert [{"shard": int(j["metadata"]["labels"]["shardwise.io/shard"])} for j in retrains.values()] == [
        {"shard": r["shard"]} for r in mc["retrainedShards"]] and mc["purgedCheckpoints"]
    models = [ShardedModel.model_validate(d) for d in kube.get(kube.cr(ns, "ShardedModel"))["items"]]
    report = scan_for_forgotten(store, ns, models)
    assert report.findings == [] and report.forgotten == {"digits": fr["samples"]}
    # and as an admin would run it: `shardwise verify --scan` with the models as `kubectl get -o yaml` lists them
    listed = tmp_path / "models.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                                      "items": kube.get(kube.cr(ns, "ShardedModel"))["items"]}))
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    capsys.readouterr()
    assert main(["--store", f"s3://{store.bucket}", "-n", ns, "verify", "--scan", "--models", str(listed)]) == 0
    out = capsys.readouterr().out
    assert "1 certificate(s) checked, 0 problem(s)" in out and "0 finding(s)" in out, out


def test_exit_code_2_fails_the_job_at_once_and_other_failures_are_retried(cluster):
    kube, ns, op, kubelet, store = cluster
    codes = {"s0": 2, "s1": 1}  # shard 0's trainer: bad configuration; shard 1's: a crash, every time

    def exit_code(pod: dict) -> int | None:
        shard = pod["metadata"]["labels"].get("shardwise.io/shard")
        return codes.get(f"s{shard}")
    kubelet.exit_codes = exit_code
    kube.apply_cr(ns, examples("01-dataset.yaml")[0])
    kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "m"},
                       "spec": {"datasetRef": "digits", "shards": 2, "slices": 1}})

    def failed(name: str) -> dict | None:
        j = jobs(kube, ns).get(name)
        conds = {c["type"]: c for c in ((j or {}).get("status") or {}).get("conditions", []) if c["status"] == "True"}
        return j if "Failed" in conds else None
    j0 = kube.wait("shard 0's Job failed", lambda: failed("m-s0-r1-f0"), timeout=120)
    j1 = kube.wait("shard 1's Job failed", lambda: failed("m-s1-r1-f0"), timeout=180)
    assert j0["status"].get("failed") == 1  # podFailurePolicy FailJob: no retry
    assert j1["status"].get("failed") == 3  # backoffLimit 2: three tries
    reasons = {c["reason"] for c in j0["status"]["conditions"] if c["type"] == "Failed"}
    assert reasons == {"PodFailurePolicy"}, j0["status"]
    st = kube.wait("model Failed", lambda: (s := status(kube, ns, "ShardedModel", "m")).get("phase") == "Failed"
                   and s, timeout=60)
    assert "m-s0-r1-f0" in str(st["conditions"])


def test_an_operator_killed_mid_retrain_creates_no_duplicate_job_and_a_deleted_model_takes_its_jobs(cluster):
    kube, ns, op, kubelet, store = cluster
    kube.apply_cr(ns, examples("01-dataset.yaml")[0])
    kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "m"},
                       "spec": {"datasetRef": "digits", "shards": 2, "slices": 2,
                                "training": {"epochsPerSlice": 2}}})
    kube.wait("model Ready", lambda: status(kube, ns, "ShardedModel", "m").get("phase") == "Ready", timeout=600)
    hold = {"on": True}
    kubelet.exit_codes = lambda pod: None if not hold["on"] else _hold(hold)  # retrains wait for us
    kube.apply_cr(ns, {"kind": "ForgetRequest", "metadata": {"name": "f"},
                       "spec": {"datasetRef": "digits", "ownerKey": "subject-0007"}})
    def retrains() -> dict[str, str]:
        return {n: j["metadata"]["uid"] for n, j in jobs(kube, ns).items()
                if j["metadata"]["labels"].get("shardwise.io/purpose") == "retrain"}
    before = kube.wait("a retrain Job", retrains, timeout=120)
    op.kill()  # mid-retrain: its Job exists, its Pod waits for the kubelet
    op.start()
    hold["on"] = False
    fr = kube.wait("forget Complete", lambda: (s := status(kube, ns, "ForgetRequest", "f")).get("phase") == "Complete"
                   and s, timeout=600)
    # the restarted operator found the Job it had created (same name, same uid) and made no other
    assert retrains() == before and len(before) == len(fr["certificate"]["models"][0]["retrainedShards"]) == 1
    (job,) = before
    assert [p for p in kubelet.ran if p.startswith(f"{job}-")] and len(
        [p for p in kubelet.ran if p.startswith(f"{job}-")]) == 1  # and it ran one Pod
    kube.delete(kube.cr(ns, "ShardedModel", "m"))
    kube.wait("Jobs collected", lambda: not [j for j in jobs(kube, ns).values()
                                             if j["metadata"]["labels"].get("shardwise.io/model") == "m"], timeout=120)


def _hold(hold: dict) -> int | None:
    while hold["on"]:
        import time

        time.sleep(0.2)
    return None
