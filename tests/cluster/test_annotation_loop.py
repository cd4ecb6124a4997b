"""The annotation loop in a cluster: README's annotation sequence on the real control plane, with
people who are Kubernetes users.

alice is bound the chart's annotator ClusterRole in the tenant's namespace, bob its viewer role. The
noisy digits are the tenant's own images in its S3 bucket. The operator (chart RBAC, tenant Secret)
trains; the baseline Experiment runs as an evaluation Job; `shardwise --context alice report` reads
the Experiment from the API server and the report from the store; the page served by
`shardwise --context alice ui` turns every accepted suggestion into a Correction created with
alice's credentials, which the operator applies at once (a create event, no resync) as a Dataset
revision recorded as hers; bob may read but not fix, and alice cannot fix in bob's name (the chart's
admission policy); one more fix with `shardwise --context alice relabel`, which waits for the
retrain. The model is then retrained exactly as the local body retrains it (the same weights, shard
by shard), and the after-fixes Experiment compares itself with the baseline.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest
import yaml

from shardwise.api import Correction, Dataset, ShardedModel
from shardwise.api.correction import CorrectionSpec
from shardwise.cli import main
from shardwise.control import StoreControl
from shardwise.errors import Forbidden
from shardwise.kube.cluster import Cluster, ClusterRegistry
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from shardwise.store.s3 import S3Store
from shardwise.ui.fixes import ClusterFixes
from shardwise.ui.server import make_server
from tests.cluster.controlplane import REPO, people_kubeconfig
from tests.cluster.kube import Kube
from tests.cluster.kubelet import Kubelet
from tests.cluster.test_operator_on_a_control_plane import RELEASE, Operator, chart_rbac, status
from tests.integration.exactness import published
from tests.integration.test_ui_api import call, get

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
EXAMPLE = REPO / "examples" / "annotation"
FIXES = 8


def example(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


@pytest.fixture
def team(control_plane, kube: Kube, seaweedfs, tmp_path, monkeypatch):
    ns = f"team-{uuid.uuid4().hex[:6]}"
    kube.namespace(ns)
    bucket, data = f"cp-{uuid.uuid4().hex[:12]}", f"data-{uuid.uuid4().hex[:10]}"
    admin = seaweedfs.client()
    admin.make_bucket(bucket)
    admin.make_bucket(data)
    images = tmp_path / "noisy-digits"
    subprocess.run([sys.executable, str(EXAMPLE / "make_noisy_digits.py"), str(images)], check=True,
                   capture_output=True)
    for f in sorted(images.iterdir()):  # the tenant's own images, in its own bucket
        admin.fput_object(data, f"noisy-digits/{f.name}", str(f))
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}})
    token = chart_rbac(kube)
    for person, role in (("alice", "annotator"), ("bob", "viewer")):  # as a platform team binds them
        kube.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{person}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{RELEASE}-{role}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": person}]})
    # a laptop: a kubeconfig with both people's contexts, and the tenant's store keys
    kc = tmp_path / "people.kubeconfig"
    kc.write_text(people_kubeconfig(control_plane.url, control_plane.people, current="alice"))
    monkeypatch.setenv("KUBECONFIG", str(kc))
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    op = Operator(control_plane, token, {
        "SHARDWISE_S3_ENDPOINT": seaweedfs.endpoint, "SHARDWISE_STORE_BUCKET": bucket,
        "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test", "SHARDWISE_RESYNC_SECONDS": "600"}, tmp_path)
    kubelet = Kubelet(kube, ns, workers=2)
    op.start()
    kubelet.start()
    yield ns, op, kubelet, S3Store(seaweedfs.client(), bucket, ""), data, images
    kubelet.stop()
    op.kill()


class Page:
    """`shardwise --context WHO ui`, serving on a free port (the server the command runs)."""

    def __init__(self, store, ns: str, context: str):
        self.cluster = Cluster(context)
        self.fixes = ClusterFixes(ClusterRegistry(self.cluster, ns), wait_seconds=120)
        self.srv = make_server(store, ns, "", port=0, fixes=self.fixes)
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.cluster.close()


def test_the_annotation_sequence_in_a_cluster(team, kube: Kube, tmp_path, capsys):
    """The operator resyncs every 600 s here, and the page waits at most 120 s for each fix to be
    applied: every fix was picked up from its create event."""
    ns, op, kubelet, store, data, images = team
    sw = lambda *argv: main(["--context", "alice", "--store", f"s3://{store.bucket}", "-n", ns, *argv])  # noqa: E731
    L = Layout(ns)
    flipped = set((images / "flipped.txt").read_text().split())
    ds_doc, model_doc = example("01-data-and-model.yaml")
    ds_doc["spec"]["source"]["uri"] = f"s3://{data}/noisy-digits"
    model_name = model_doc["metadata"]["name"]

    # 1. train, 2. the baseline Experiment (an evaluation Job)
    kube.apply_cr(ns, ds_doc)
    kube.apply_cr(ns, model_doc)
    try:
        kube.wait("model Ready", lambda: (s := status(kube, ns, "ShardedModel", model_name)).get("phase") == "Ready"
                  and s.get("accuracy") is not None, timeout=600)
        kube.apply_cr(ns, example("02-experiment-before.yaml")[0])
        before = kube.wait("before-fixes Succeeded", lambda: (s := status(kube, ns, "Experiment", "before-fixes"))
                           .get("phase") == "Succeeded" and s, timeout=300)
    except AssertionError:
        raise AssertionError(f"{op.tail()}\nkubelet: {kubelet.errors}") from None
    assert before["modelVersion"] == 1 and before["labelIssues"] > FIXES

    # 3. the report, with the Experiment from the API server and the data from the tenant's store
    assert sw("report", "before-fixes", "--out", str(tmp_path / "before.html")) == 0
    assert "data:image/png;base64," in (tmp_path / "before.html").read_text()

    # 4. the page as alice: every accepted suggestion a Correction of hers, applied by the operator
    page = Page(store, ns, "alice")
    try:
        info = get(page.srv, "/api/info")
        assert info["user"] == "alice" and "Correction filed in the cluster as alice" in info["notice"]
        fixes = get(page.srv, f"/api/items?view=candidates&limit={FIXES}")["items"]
        revisions = []
        for it in fixes:
            code, doc, _ = call(page.srv, "POST", "/api/actions", {"id": it["id"], "action": "relabel",
                                                                   "label": it["suggested"]})
            assert code == 200, doc
            revisions.append(doc["revision"])
        assert revisions == list(range(2, 2 + FIXES))
    finally:
        page.close()
    right = sum(it["id"] in flipped for it in fixes)
    assert right >= FIXES - 1, f"only {right} of the top {FIXES} candidates were flipped on purpose"

    # bob may look, not fix; alice may not fix in bob's name
    bob = Page(store, ns, "bob")
    try:
        assert get(bob.srv, "/api/info")["user"] == "bob"
        code, doc, _ = call(bob.srv, "POST", "/api/actions", {"id": fixes[0]["id"], "action": "drop"})
        assert code == 403 and "forbidden" in doc["error"] and "corrections" in doc["error"], doc
    finally:
        bob.close()
    alice = ClusterRegistry(Cluster("alice"), ns)
    spoof = Correction(kind="Correction", metadata={"name": "spoof"}, spec=CorrectionSpec(
        datasetRef="noisy-digits", author="bob", drop=[fixes[0]["id"]]))
    with pytest.raises(Forbidden, match=r"spec.author: must be the user creating the Correction \(alice\), not bob"):
        alice.create(spoof)

    # 5. one more fix on the command line, as alice; it waits for the operator's retrain
    v = StoreControl(store, ns).view("noisy-digits")
    fixed = {it["id"] for it in fixes}
    i = next(j for j in map(int, np.flatnonzero(v.train)) if str(v.table.ids[j]) in flipped
             and str(v.table.ids[j]) not in fixed)
    sid, label = str(v.table.ids[i]), "0" if v.table.class_names[int(v.state.labels[i])] != "0" else "1"
    capsys.readouterr()
    assert sw("relabel", "--dataset", "noisy-digits", "--id", sid, "--label", "7", "--by", "bob") == 1
    assert "--by: in a cluster a correction is made as the kube context's user (alice)" in capsys.readouterr().err
    try:
        assert sw("relabel", "--dataset", "noisy-digits", "--id", sid, "--label", label, "--timeout", "600") == 0
    except AssertionError:
        raise AssertionError(f"{op.tail()}\nkubelet: {kubelet.errors}") from None
    out = capsys.readouterr()
    last = 2 + FIXES
    assert f"dataset.shardwise.io/noisy-digits revision {last}" in out.err and f"{model_name}: version" in out.out

    # every fix attributable: one Correction each, all alice's, each the revision that records her
    corrections = {c.name: c for c in alice.list(Correction)}
    assert len(corrections) == FIXES + 1 and {c.spec.author for c in corrections.values()} == {"alice"}
    for c in corrections.values():
        assert c.status.phase == "Applied", c.status
        change = store.get_json(L.dataset_revision("noisy-digits", c.status.datasetRevision))["change"]
        assert change["by"] == "alice" and change["correction"] == {"name": c.name, "uid": c.metadata.uid}
    assert sorted(c.status.datasetRevision for c in corrections.values()) == list(range(2, last + 1))

    # 6. retrained exactly as the local body retrains: the same fixes, the same weights shard by shard
    m = ShardedModel.model_validate(kube.get(kube.cr(ns, "ShardedModel", model_name)))
    in_cluster = published(store, m, ns)
    assert in_cluster.revision == last and m.status.datasetRevision == last
    local = LocalStore(tmp_path / "local")
    reg = Registry(local, "default")
    runner = LocalRunner(local, "default", parallel=2, log=lambda msg: None)
    local_ds = {**ds_doc, "spec": {**ds_doc["spec"], "source": {**ds_doc["spec"]["source"], "uri": str(images)}}}
    reg.apply(Dataset.model_validate(local_ds))
    reg.apply(ShardedModel.model_validate(model_doc))
    runner.run(timeout=600)
    labels = {c.spec.relabel[0].id: c.spec.relabel[0].label
              for c in sorted(corrections.values(), key=lambda c: c.status.datasetRevision)}
    runner.control.relabel("noisy-digits", labels, by="alice")
    runner.run(timeout=600)
    at_home = published(local, reg.require(ShardedModel, model_name), "default")
    assert [[r.weights_sha256 for r in c] for c in at_home.chains] == \
        [[r.weights_sha256 for r in c] for c in in_cluster.chains]

    # 7. the after-fixes Experiment, compared with the baseline; its report and `get` from the cluster
    kube.apply_cr(ns, example("03-experiment-after.yaml")[0])
    after = kube.wait("after-fixes Succeeded", lambda: (s := status(kube, ns, "Experiment", "after-fixes"))
                      .get("phase") == "Succeeded" and s, timeout=300)
    assert after["modelVersion"] == m.status.publishedVersion and after["accuracyDelta"] is not None
    assert sw("report", "after-fixes", "--out", str(tmp_path / "after.html")) == 0
    assert "Compared with before-fixes" in (tmp_path / "after.html").read_text()
    capsys.readouterr()
    assert sw("get", "experiments") == 0
    table = capsys.readouterr().out
    assert "before-fixes" in table and "after-fixes" in table
    # a retrain overtaken by a later fix stops (exit 2, "superseded"); nothing else failed
    assert [e for e in kubelet.errors if "trainer: superseded:" not in e] == []
    with capsys.disabled():
        print(f"\nannotation loop in a cluster: {right}/{FIXES} page fixes were flipped labels, + 1 by the CLI; "
              f"accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f} ({after['accuracyDelta']:+.4f}); "
              f"published version {m.status.publishedVersion} equals the local body's, shard by shard; "
              f"{len(kubelet.errors)} retrain(s) superseded by a later fix")
