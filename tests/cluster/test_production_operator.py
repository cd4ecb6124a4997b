"""The operator as production runs it, on the real control plane: finalizers only where deleting
needs the operator, so that with the operator stopped (or uninstalled) everything else deletes at
once; logs at INFO in the format the chart asks for; Prometheus metrics scraped over HTTP."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.controlplane import REPO, _free_port
from tests.cluster.kube import ApiError, Kube
from tests.cluster.test_operator_on_a_control_plane import Operator, chart_rbac, cluster, examples, helm, status  # noqa: F401 (cluster: a fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
FINALIZER = "shardwise.io/finalizer"
TINY = {"shards": 2, "slices": 1, "training": {"epochsPerSlice": 1}}


def tenant(kube: Kube, seaweedfs) -> tuple[str, dict[str, str]]:
    """A tenant namespace with its store Secret; the operator's settings for it."""
    ns, bucket = f"prod-{uuid.uuid4().hex[:6]}", f"cp-{uuid.uuid4().hex[:12]}"
    kube.namespace(ns)
    seaweedfs.client().make_bucket(bucket)
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}})
    return ns, {"SHARDWISE_S3_ENDPOINT": seaweedfs.endpoint, "SHARDWISE_STORE_BUCKET": bucket,
                "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test"}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as Prometheus would: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def finalizers(kube: Kube, ns: str, kind: str, name: str) -> list[str]:
    return kube.get(kube.cr(ns, kind, name))["metadata"].get("finalizers", [])


def gone(kube: Kube, ns: str, kind: str, name: str) -> bool:
    try:
        kube.get(kube.cr(ns, kind, name))
        return False
    except ApiError as e:
        return e.status == 404


def test_only_what_needs_the_operator_holds_a_finalizer_and_the_rest_deletes_while_it_is_stopped(cluster):
    kube, ns, op, kubelet, store = cluster
    kube.apply_cr(ns, examples("01-dataset.yaml")[0])
    kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "keep"}, "spec": {"datasetRef": "digits", **TINY}})
    kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "tidy"},
                       "spec": {"datasetRef": "digits", "storagePolicy": "Delete", **TINY}})
    kube.apply_cr(ns, {"kind": "Experiment", "metadata": {"name": "x"},
                       "spec": {"datasetRef": "digits", "modelRef": "keep"}})
    kube.apply_cr(ns, {"kind": "ForgetRequest", "metadata": {"name": "f"},
                       "spec": {"datasetRef": "digits", "ownerKey": "subject-0007"}})
    kube.apply_cr(ns, {"kind": "Correction", "metadata": {"name": "c"},
                       "spec": {"datasetRef": "digits", "author": "admin", "drop": ["digits-00003"]}})
    seen = {("ShardedModel", "keep"), ("ShardedModel", "tidy"), ("Experiment", "x"), ("ForgetRequest", "f"),
            ("Correction", "c"), ("Dataset", "digits")}
    try:
        kube.wait("every object reconciled", lambda: all(status(kube, ns, k, n).get("phase") for k, n in seen)
                  and status(kube, ns, "ShardedModel", "tidy").get("phase") == "Ready"
                  and status(kube, ns, "ForgetRequest", "f").get("phase") == "Complete", timeout=300)
    except AssertionError:
        raise AssertionError(op.tail()) from None
    held = {(k, n): finalizers(kube, ns, k, n) for k, n in seen}
    assert held.pop(("Dataset", "digits")) == [FINALIZER]  # in use: held until no model or experiment names it
    assert held.pop(("ShardedModel", "tidy")) == [FINALIZER]  # storagePolicy Delete: its objects leave the store
    assert held == {k: [] for k in held}, held
    ds = kube.get(kube.cr(ns, "Dataset", "digits"))
    assert ds["metadata"]["labels"]["shardwise.io/in-use"] == "true"

    op.kill()  # stopped, as after `helm uninstall`
    for kind, name in (("ForgetRequest", "f"), ("Correction", "c"), ("Experiment", "x"), ("ShardedModel", "keep")):
        kube.delete(kube.cr(ns, kind, name))
        kube.wait(f"{kind} {name} deleted with the operator stopped", lambda: gone(kube, ns, kind, name), timeout=20)
    for kind, name in (("ShardedModel", "tidy"), ("Dataset", "digits")):
        kube.delete(kube.cr(ns, kind, name))
        assert kube.get(kube.cr(ns, kind, name))["metadata"].get("deletionTimestamp")  # waits for the operator
    tidy_uid = kube.get(kube.cr(ns, "ShardedModel", "tidy"))["metadata"]["uid"]
    assert store.list(f"{ns}/models/tidy/{tidy_uid}/")

    op.start()  # back: the model's objects leave the store, then the Dataset is no longer in use
    try:
        kube.wait("tidy deleted", lambda: gone(kube, ns, "ShardedModel", "tidy"), timeout=120)
        kube.wait("digits deleted", lambda: gone(kube, ns, "Dataset", "digits"), timeout=120)
    except AssertionError:
        raise AssertionError(op.tail()) from None
    assert store.list(f"{ns}/models/tidy/{tidy_uid}/") == []


def test_the_operator_logs_each_step_at_info_as_json_lines_and_serves_metrics(control_plane, kube, seaweedfs,
                                                                                  tmp_path):

    ns, env = tenant(kube, seaweedfs)
    port = _free_port()
    op = Operator(control_plane, chart_rbac(kube), env, tmp_path, ("--log-format=json", f"--metrics-port={port}"))
    op.start()
    try:
        kube.apply_cr(ns, examples("01-dataset.yaml")[0])
        kube.wait("Dataset Ready", lambda: status(kube, ns, "Dataset", "digits").get("phase") == "Ready", timeout=120)
        kube.wait("its log line", lambda: "ingesting" in op.text(), timeout=30)
        # a model (its Jobs wait: no kubelet here) and two forgets: one certified at once, one waiting for it
        kube.apply_cr(ns, {"kind": "ForgetRequest", "metadata": {"name": "early"},
                           "spec": {"datasetRef": "digits", "ownerKey": "subject-0001"}})
        kube.wait("early Complete", lambda: status(kube, ns, "ForgetRequest", "early").get("phase") == "Complete",
                  timeout=60)
        kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "m"},
                           "spec": {"datasetRef": "digits", "shards": 2, "slices": 1}})
        kube.apply_cr(ns, {"kind": "ForgetRequest", "metadata": {"name": "late"},
                           "spec": {"datasetRef": "digits", "ownerKey": "subject-0002", "deadlineDays": 2}})
        kube.wait("late accepted", lambda: status(kube, ns, "ForgetRequest", "late").get("deadline"), timeout=60)
        got = kube.wait("the metrics", lambda: (m := scrape(port)).get(("shardwise_jobs", (
            ("namespace", ns), ("outcome", "active"), ("purpose", "train")))) == 2 and m, timeout=60)
    finally:
        op.kill()
    assert got[("shardwise_forget_requests", (("namespace", ns), ("phase", "Complete")))] == 1
    assert got[("shardwise_forget_time_to_certificate_seconds_count", (("namespace", ns),))] == 1
    left = got[("shardwise_forget_deadline_seconds_left", (("namespace", ns), ("request", "late")))]
    assert 2 * 86400 - 600 < left <= 2 * 86400  # counting down from its 2 days
    assert ("shardwise_forget_deadline_seconds_left", (("namespace", ns), ("request", "early"))) not in got
    assert got[("shardwise_reconcile_pass_seconds_count", (("namespace", ns),))] >= 3
    lines = [json.loads(line) for line in op.log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert {"message": "dataset/digits: ingesting digits", "severity": "info"} in [
        {k: rec.get(k) for k in ("message", "severity")} for rec in lines], lines[-20:]


def test_one_operator_acts_while_a_second_stands_by_and_takes_over_when_it_is_gone(control_plane, kube, seaweedfs,
                                                                                   tmp_path):
    ns, env = tenant(kube, seaweedfs)
    lease = f"op-{uuid.uuid4().hex[:8]}"
    env |= {"SHARDWISE_LEASE_NAME": lease, "SHARDWISE_RESYNC_SECONDS": "5"}
    token = chart_rbac(kube)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = (Operator(control_plane, token, env, tmp_path / x) for x in ("a", "b"))
    path = f"/apis/coordination.k8s.io/v1/namespaces/shardwise-system/leases/{lease}"
    try:
        a.start()
        first = kube.wait("a holds the lease", lambda: kube.get(path)["spec"].get("holderIdentity"), timeout=60)
        b.start()  # a second instance, e.g. a laptop's `shardwise operator`
        kube.wait("b stands by", lambda: "leader election: standing by" in b.text(), timeout=60)
        kube.apply_cr(ns, examples("01-dataset.yaml")[0])
        kube.wait("digits Ready", lambda: status(kube, ns, "Dataset", "digits").get("phase") == "Ready", timeout=120)
        assert "dataset/digits: ingesting" in a.text() and "ingesting" not in b.text()  # whole logs, not tails
        assert kube.get(path)["spec"]["holderIdentity"] == first

        a.kill()  # gone without releasing: b takes over once the lease expires (15 s)
        other = {**examples("01-dataset.yaml")[0], "metadata": {"name": "digits2"}}
        kube.apply_cr(ns, other)
        kube.wait("digits2 Ready", lambda: status(kube, ns, "Dataset", "digits2").get("phase") == "Ready", timeout=120)
        assert "leader election: leading" in b.text() and "dataset/digits2: ingesting" in b.text()
        assert kube.get(path)["spec"]["holderIdentity"] not in (None, first)
    except AssertionError:
        raise AssertionError(f"a: {a.tail()}\nb: {b.tail()}") from None
    finally:
        a.kill()
        b.kill()


def test_a_queued_model_waits_for_admission_and_its_retrain_carries_the_forget_priority(cluster):
    """Kueue is not installed here: the test admits a Job as Kueue does, by unsuspending it."""
    kube, ns, op, kubelet, store = cluster
    for name, value in (("sw-batch-low", 100), ("sw-forget-first", 1000)):
        kube.apply(f"/apis/scheduling.k8s.io/v1/priorityclasses/{name}", {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value})
    kube.apply_cr(ns, examples("01-dataset.yaml")[0])
    kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "q"}, "spec": {
        "datasetRef": "digits", **TINY, "resources": {"queueName": "team-q", "priorityClassName": "sw-batch-low",
                                                      "retrainPriorityClassName": "sw-forget-first"}}})

    def jobs_now() -> dict[str, dict]:
        return {j["metadata"]["name"]: j for j in kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]}

    def admit(names) -> None:
        for name in names:
            kube.merge(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}", {"spec": {"suspend": False}})

    try:
        st = kube.wait("model WaitingForAdmission", lambda: (s := status(kube, ns, "ShardedModel", "q"))
                       .get("phase") == "WaitingForAdmission" and s, timeout=120)
        first = jobs_now()
        assert len(first) == 2 and all(j["spec"]["suspend"] for j in first.values())
        assert "wait for admission" in next(c["message"] for c in st["conditions"] if c["type"] == "Progressing")
        assert not kubelet.ran  # held: no Pod ran
        admit(first)
        kube.wait("model Ready", lambda: status(kube, ns, "ShardedModel", "q").get("phase") == "Ready", timeout=300)
        kube.apply_cr(ns, {"kind": "ForgetRequest", "metadata": {"name": "f"},
                           "spec": {"datasetRef": "digits", "ownerKey": "subject-0007"}})
        kube.wait("forget WaitingForAdmission",
                  lambda: status(kube, ns, "ForgetRequest", "f").get("phase") == "WaitingForAdmission", timeout=120)
        (retrain,) = [j for j in jobs_now().values() if j["metadata"]["labels"]["shardwise.io/purpose"] == "retrain"]
        assert retrain["spec"]["suspend"] is True
        assert retrain["spec"]["template"]["spec"]["priorityClassName"] == "sw-forget-first"
        assert retrain["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-q"
        admit([retrain["metadata"]["name"]])
        kube.wait("forget Complete", lambda: status(kube, ns, "ForgetRequest", "f").get("phase") == "Complete",
                  timeout=300)
    except AssertionError:
        raise AssertionError(f"{op.tail()}\nkubelet: {kubelet.errors}") from None


# Where each kind the chart renders lives in the API (the chart's whole output must be known here).
API_PATHS = {
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "ValidatingAdmissionPolicy": ("/apis/admissionregistration.k8s.io/v1", "validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding":
        ("/apis/admissionregistration.k8s.io/v1", "validatingadmissionpolicybindings", False),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
}
# The Prometheus Operator is not installed here: this CRD stands in for its ServiceMonitor CRD (any spec kept),
# so that the API server can take the chart's ServiceMonitor as a cluster with it would.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
             "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _url(endpoint: str) -> str:
    """The chart takes the S3 endpoint as a URL (its schema refuses a bare host:port)."""
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def _install(kube: Kube, docs: list[dict], release_ns: str) -> None:
    for d in docs:
        if d["kind"] == "CustomResourceDefinition":
            continue  # installed already, from the chart's crds/ (as `helm install` does before the templates)
        base, plural, namespaced = API_PATHS[d["kind"]]
        where = f"/namespaces/{d['metadata'].get('namespace', release_ns)}" if namespaced else ""
        kube.apply(f"{base}{where}/{plural}/{d['metadata']['name']}", d)


def test_the_chart_installs_as_rendered_and_its_images_pull_secrets_and_metrics_reach_pods_and_jobs(
        control_plane, kube, seaweedfs, tmp_path):
    """The whole chart as `helm install` would apply it (umbrella `global` values, imagePullSecrets, images by
    digest, namespaced mode, a ServiceMonitor), on the real API server and controllers; then the operator run
    as the Deployment's container says (its args and env, read back from the API server; the ports moved to
    free ones on this machine), with the chart's ServiceAccount token."""
    release, digest = f"sw-{uuid.uuid4().hex[:6]}", "sha256:" + "ab" * 32
    release_ns = f"{release}-system"
    ns, env = tenant(kube, seaweedfs)
    kube.namespace(release_ns)
    kube.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{SERVICE_MONITOR_CRD['metadata']['name']}",
               SERVICE_MONITOR_CRD)
    kube.wait("ServiceMonitor CRD served", lambda: any(
        r["name"] == "servicemonitors" for r in kube.get("/apis/monitoring.coreos.com/v1")["resources"]))
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "type":
              "kubernetes.io/dockerconfigjson", "metadata": {"name": "regcred"},
              "stringData": {".dockerconfigjson": '{"auths": {}}'}})
    values = {"global": {"imageRegistry": "registry.example", "storageClass": "fast"},  # an umbrella chart's
              "imagePullSecrets": [{"name": "regcred"}],
              "image": {"operator": {"digest": digest}, "trainer": {"digest": digest}},
              "watch": {"clusterWide": False, "namespaces": [ns]},
              "store": {"endpoint": _url(env["SHARDWISE_S3_ENDPOINT"]), "bucket": env["SHARDWISE_STORE_BUCKET"]},
              "operator": {"logFormat": "json"},
              "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}}
    files = helm.Chart.load(str(REPO / "charts" / "shardwise")).render(
        values, name=release, namespace=release_ns, is_install=True)
    docs = [d for path, text in files.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    _install(kube, docs, release_ns)

    # the Deployment's Pod, made by the real Deployment and ReplicaSet controllers, carries what was asked
    pods = f"/api/v1/namespaces/{release_ns}/pods"
    (pod,) = kube.wait("operator Pod created", lambda: kube.get(pods)["items"], timeout=60)
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["containers"][0]["image"] == f"shardwise/operator@{digest}"
    (svc,) = [d for d in docs if d["kind"] == "Service"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()  # the metrics Service finds it
    assert "metrics" in {p["name"] for p in spec["containers"][0]["ports"]}
    monitor = kube.get(f"/apis/monitoring.coreos.com/v1/namespaces/{release_ns}/servicemonitors/{release}-operator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]

    # the operator as that container runs, with the ServiceAccount the chart made
    (container,) = kube.get(f"/apis/apps/v1/namespaces/{release_ns}/deployments/{release}-operator")[
        "spec"]["template"]["spec"]["containers"]
    health, metrics = _free_port(), _free_port()
    args = [a.replace("0.0.0.0:8080", f"127.0.0.1:{health}").replace("=8081", f"={metrics}")
            for a in container["args"]][1:]
    token = kube.post(f"/api/v1/namespaces/{release_ns}/serviceaccounts/{spec['serviceAccountName']}/token",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 3600}})["status"]["token"]
    env = {e["name"]: e.get("value", "") for e in container["env"] if e["name"] != "HOME"}  # "" is stored absent
    op = Operator(control_plane, token, env, tmp_path, tuple(args))
    op.start()
    try:
        kube.apply_cr(ns, examples("01-dataset.yaml")[0])
        kube.apply_cr(ns, {"kind": "ShardedModel", "metadata": {"name": "m"}, "spec": {"datasetRef": "digits", **TINY}})
        jobs = kube.wait("trainer Jobs", lambda: kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"],
                         timeout=120)
        for j in jobs:
            pod_spec = j["spec"]["template"]["spec"]
            assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
            assert {c["image"] for c in pod_spec["containers"]} == {f"shardwise/trainer@{digest}"}
        lease = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{release_ns}/leases/{release}-operator")
        assert lease["spec"]["holderIdentity"]  # led through the chart's leader Role
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=5) as r:
            assert r.status == 200
        scraped = scrape(metrics)
        assert scraped[("shardwise_reconcile_pass_seconds_count", (("namespace", ns),))] >= 1
        lines = [json.loads(x) for x in op.text().splitlines() if x.startswith("{")]
        assert any("shardedmodel/m" in x.get("message", "") for x in lines), op.tail()
    except AssertionError:
        raise AssertionError(op.tail()) from None
    finally:
        op.kill()
