"""A tenant's store credentials cannot reach another tenant's bucket (real S3 policy).

The operator hands each tenant's trainer pods only the store Secret of that tenant's
namespace (tested in test_operator.py and test_kube_jobs.py). This test proves the other
half with a real server: SeaweedFS started with one identity per tenant, each allowed
only its own bucket. Tenant A's credentials read and write bucket A; every read, write,
listing and delete of bucket B is refused by the server (AccessDenied, each S3 call sent as
such), the store reports it with a clear error before writing anything, and bucket B keeps
what it had. The same raw calls with tenant B's own credentials pass: the policy refuses, not
a typo in a key.
"""

from __future__ import annotations

import io
import json

import pytest
from minio.error import S3Error

from shardwise.errors import StoreUnavailable
from shardwise.store.s3 import S3Store
from tests.fixtures_s3 import ACCESS_KEY, SECRET_KEY, start_seaweedfs

pytestmark = pytest.mark.slow


def identity(name: str, key: str, secret: str, actions: list[str]) -> dict:
    return {"name": name, "credentials": [{"accessKey": key, "secretKey": secret}], "actions": actions}


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory):
    work = tmp_path_factory.mktemp("weed-tenants")
    # Admin:<bucket> lets the store read its own bucket's versioning and object-lock settings
    scoped = lambda b: [f"Read:{b}", f"Write:{b}", f"List:{b}", f"Tagging:{b}", f"Admin:{b}"]  # noqa: E731
    (work / "s3.json").write_text(json.dumps({"identities": [
        identity("admin", ACCESS_KEY, SECRET_KEY, ["Admin", "Read", "Write", "List", "Tagging"]),
        identity("tenant-a", "TENANTAKEY0000000001", "tenant-a-secret-0000000000000000000001", scoped("bucket-a")),
        identity("tenant-b", "TENANTBKEY0000000001", "tenant-b-secret-0000000000000000000001", scoped("bucket-b")),
    ]}))
    server = start_seaweedfs(work, (f"-s3.config={work / 's3.json'}",))
    admin = server.client()
    for b in ("bucket-a", "bucket-b"):
        admin.make_bucket(b)
    yield server
    server.stop()


def test_a_tenants_credentials_reach_only_its_own_bucket(two_tenants):
    a_client = two_tenants.client("TENANTAKEY0000000001", "tenant-a-secret-0000000000000000000001")
    own = S3Store(a_client, "bucket-a", "tenant-a", attempts=2, backoff=0.05)
    own.put_verified("datasets/d/current.json", b"{}")
    assert own.get_verified("datasets/d/current.json") == b"{}"
    assert own.list("datasets/") == ["datasets/d/current.json"]

    b_admin = S3Store(two_tenants.client(), "bucket-b", "tenant-b")
    b_admin.put_verified("models/m/checkpoint", b"tenant b's weights")
    other = S3Store(a_client, "bucket-b", "tenant-b", attempts=2, backoff=0.05)
    for attempt in (lambda: other.get_bytes("models/m/checkpoint"),
                    lambda: other.put_bytes("models/m/checkpoint", b"overwritten"),
                    lambda: other.list("models/"),
                    lambda: other.delete("models/m/checkpoint")):
        with pytest.raises(StoreUnavailable, match="refused .*bucket-b.*check credentials"):
            attempt()
    assert b_admin.get_verified("models/m/checkpoint") == b"tenant b's weights"
    assert b_admin.list("") == ["models/m/checkpoint"]


def raw_calls(client, key: str) -> dict:
    """Each S3 operation the store uses, sent as it is (no store-level check in front)."""
    return {"GetObject": lambda: client.get_object("bucket-b", key).read(),
            "PutObject": lambda: client.put_object("bucket-b", key, io.BytesIO(b"overwritten"), 11),
            "ListObjects": lambda: list(client.list_objects("bucket-b", prefix="tenant-b/", recursive=True)),
            "DeleteObject": lambda: client.remove_object("bucket-b", key)}


def test_the_server_refuses_each_call_of_another_tenant(two_tenants):
    b_client = two_tenants.client("TENANTBKEY0000000001", "tenant-b-secret-0000000000000000000001")
    b_admin = S3Store(two_tenants.client(), "bucket-b", "tenant-b")
    b_admin.put_verified("models/m/raw-checkpoint", b"tenant b's weights")
    key = "tenant-b/models/m/raw-checkpoint"
    a_client = two_tenants.client("TENANTAKEY0000000001", "tenant-a-secret-0000000000000000000001")
    for name, call in raw_calls(a_client, key).items():
        with pytest.raises(S3Error) as e:
            call()
        assert e.value.code == "AccessDenied", f"{name}: {e.value.code}"
    assert b_admin.get_bytes("models/m/raw-checkpoint") == b"tenant b's weights"  # not overwritten, not deleted
    # positive control: tenant B's own credentials make the very same calls (the delete last)
    b_calls = raw_calls(b_client, key)
    assert b_calls["GetObject"]() == b"tenant b's weights"
    b_calls["PutObject"]()
    assert key in [o.object_name for o in b_calls["ListObjects"]()]
    b_calls["DeleteObject"]()
    assert "models/m/raw-checkpoint" not in b_admin.list("models/")
