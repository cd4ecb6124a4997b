"""`shardwise verify`: re-check the ledger of forget certificates against the store."""

from __future__ import annotations

from shardwise.brain.forget import verify_chain
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise.store.s3 import S3Store


def _versions_left(store: Store, key: str) -> str:
    """What of a key is still stored: "" when nothing, on S3 counting versions a delete marker hides."""
    if isinstance(store, S3Store):
        kept = [v.version_id for v in store.list_versions(key) if v.key == key and not v.is_delete_marker]
        return f"{len(kept)} stored version(s): {', '.join(map(str, kept))}" if kept else ""
    return "the object" if store.exists(key) else ""


def verify_ledger(store: Store, namespace: str, request: str | None = None) -> tuple[list[str], int]:
    L = Layout(namespace)
    keys = sorted(k for k in store.list(L.ledger()) if k.endswith(".json"))
    entries = [store.get_json(k) for k in keys]
    problems = verify_chain(entries)
    checked = 0
    for key, e in zip(keys, entries):
        cert = e.get("certificate", {})
        if request and cert.get("request") != request:
            continue
        checked += 1
        for m in cert.get("models", []):
            for k in m.get("purgedCheckpoints", []):
                left = _versions_left(store, k)
                if left:
                    problems.append(f"{key}: purged checkpoint {k} is still in the store ({left})")
            for c in m.get("newCheckpoints", []):
                if store.exists(c["key"]) and store.stored_sha256(c["key"]) != c["sha256"]:
                    problems.append(f"{key}: checkpoint {c['key']} does not match the certified sha256")
    if request and checked == 0:
        problems.append(f"no certificate for ForgetRequest {request!r} in the ledger")
    return problems, checked
