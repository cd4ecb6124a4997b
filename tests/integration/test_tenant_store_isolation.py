"""A tenant's store credentials cannot reach another tenant's bucket (real S3 policy).

The operator hands each tenant's trainer pods only the store Secret of that tenant's
namespace (tested in test_operator.py and test_kube_jobs.py). This test proves the other
half with a real server: SeaweedFS started with one identity per tenant, each allowed
only its own bucket. Tenant A's credentials read and write bucket A; every read, write
and listing of bucket B is refused with a clear error, and nothing lands in bucket B.
"""

from __future__ import annotations

import json

import pytest

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
