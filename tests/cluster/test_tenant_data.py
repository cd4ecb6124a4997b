"""A tenant's own data, on a real control plane: a Dataset's s3:// source is read with that tenant's
credentials (the Secret in its namespace), never the operator's. SeaweedFS runs with one identity
per tenant; tenant A's keys reach its store bucket and its data bucket, not tenant B's. The
operator process has no S3 credentials of its own.
"""

from __future__ import annotations

import io
import json
import os
import uuid

import pytest

from tests.cluster.test_operator_on_a_control_plane import Operator, chart_rbac, status
from tests.fixtures_s3 import ACCESS_KEY, SECRET_KEY, start_seaweedfs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
A = ("TENANTAKEY0000000001", "tenant-a-secret-0000000000000000000001")
B = ("TENANTBKEY0000000001", "tenant-b-secret-0000000000000000000001")


def identity(name: str, keys: tuple[str, str], buckets: list[str]) -> dict:
    actions = [f"{a}:{b}" for b in buckets for a in ("Read", "Write", "List", "Tagging", "Admin")]
    return {"name": name, "credentials": [{"accessKey": keys[0], "secretKey": keys[1]}], "actions": actions}


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    work = tmp_path_factory.mktemp("weed-tenants")
    (work / "s3.json").write_text(json.dumps({"identities": [
        {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        identity("tenant-a", A, ["store-a", "team-a-data"]),
        identity("tenant-b", B, ["team-b-data"]),
    ]}))
    server = start_seaweedfs(work, (f"-s3.config={work / 's3.json'}",))
    admin = server.client()
    csv = "id,label,a,b\n" + "".join(f"r{i},{i % 2},{i % 2 + 0.01 * i},{i % 3}\n" for i in range(60))
    for bucket in ("store-a", "team-a-data", "team-b-data"):
        admin.make_bucket(bucket)
    for bucket in ("team-a-data", "team-b-data"):
        admin.put_object(bucket, "tab.csv", io.BytesIO(csv.encode()), len(csv))
    yield server
    server.stop()


def test_a_dataset_is_read_with_its_tenants_credentials_and_another_tenants_bucket_is_refused(
        control_plane, kube, tenants, tmp_path):
    assert not os.environ.get("SHARDWISE_DEV_STORE")  # else the operator would read with its own environment
    ns = f"team-a-{uuid.uuid4().hex[:6]}"
    kube.namespace(ns)
    kube.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shardwise-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": A[0], "AWS_SECRET_ACCESS_KEY": A[1]}})
    op = Operator(control_plane, chart_rbac(kube), {
        "SHARDWISE_S3_ENDPOINT": tenants.endpoint, "SHARDWISE_STORE_BUCKET": "store-a",
        "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:test", "SHARDWISE_RESYNC_SECONDS": "5"}, tmp_path)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SHARDWISE_S3_ACCESS_KEY", "SHARDWISE_S3_SECRET_KEY"):
        op.env.pop(var, None)  # the operator itself holds no S3 credentials
    op.start()
    try:
        kube.apply_cr(ns, {"kind": "Dataset", "metadata": {"name": "own"},
                           "spec": {"source": {"uri": "s3://team-a-data/tab.csv"}}})
        kube.apply_cr(ns, {"kind": "Dataset", "metadata": {"name": "other"},
                           "spec": {"source": {"uri": "s3://team-b-data/tab.csv"}}})
        own = kube.wait("own Ready", lambda: (s := status(kube, ns, "Dataset", "own")).get("phase") == "Ready" and s,
                        timeout=120)
        assert own["activeSamples"] == 60
        other = kube.wait("other Failed", lambda: (s := status(kube, ns, "Dataset", "other")).get("phase") == "Failed"
                          and s, timeout=120)
        assert "s3://team-b-data/tab.csv" in other["message"] and "AccessDenied" in other["message"], other
    except AssertionError:
        raise AssertionError(op.tail()) from None
    finally:
        op.kill()
