"""The operator as production runs it, on the real control plane: finalizers only where deleting
needs the operator, so that with the operator stopped (or uninstalled) everything else deletes at
once; logs at INFO in the format the chart asks for."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cluster.kube import ApiError, Kube
from tests.cluster.test_operator_on_a_control_plane import (  # noqa: F401 (cluster: a fixture)
    Operator, chart_rbac, cluster, examples, status)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
FINALIZER = "shardwise.io/finalizer"
TINY = {"shards": 2, "slices": 1, "training": {"epochsPerSlice": 1}}


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


def test_the_operator_logs_each_step_at_info_as_json_lines(control_plane, kube, seaweedfs, tmp_path):

    ns = f"logs-{uuid.uuid4().hex[:6]}"
    kube.namespace(ns)
    bucket = f"cp-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().make_bucket(bucket)
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}})
    op = Operator(control_plane, chart_rbac(kube), {
        "SHARDWISE_S3_ENDPOINT": seaweedfs.endpoint, "SHARDWISE_STORE_BUCKET": bucket,
        "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test"}, tmp_path, ("--log-format=json",))
    op.start()
    try:
        kube.apply_cr(ns, examples("01-dataset.yaml")[0])
        kube.wait("Dataset Ready", lambda: status(kube, ns, "Dataset", "digits").get("phase") == "Ready", timeout=120)
        kube.wait("its log line", lambda: "ingesting" in op.tail(), timeout=30)
    finally:
        op.kill()
    lines = [json.loads(line) for line in op.log.read_text().splitlines() if line.strip()]  # every line is JSON
    assert {"message": "dataset/digits: ingesting digits", "severity": "info"} in [
        {k: rec.get(k) for k in ("message", "severity")} for rec in lines], lines[-20:]
