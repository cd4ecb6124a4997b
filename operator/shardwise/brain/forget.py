"""ForgetRequests: accept (resolve and tombstone), then certify. Pure."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from shardwise.api.forget import ForgetRequestSpec
from shardwise.brain.revision import Resolution, resolve_ids, resolve_owner

MAX_LISTED = 10


def resolve(spec: ForgetRequestSpec, ids: np.ndarray, owners: np.ndarray, tombstoned_at: np.ndarray) -> Resolution:
    if spec.ownerKey is not None:
        return resolve_owner(owners, spec.ownerKey, tombstoned_at)
    return resolve_ids(ids, spec.sampleIds, tombstoned_at)


def rejection(spec: ForgetRequestSpec, res: Resolution) -> str | None:
    """Why a request cannot be accepted, or None. Unknown ids are never guessed."""
    if not res.unknown:
        return None
    if spec.ownerKey is not None:
        return f"spec.ownerKey: no sample of owner {spec.ownerKey!r} in Dataset {spec.datasetRef!r}"
    shown = ", ".join(repr(u) for u in res.unknown[:MAX_LISTED])
    more = f" and {len(res.unknown) - MAX_LISTED} more" if len(res.unknown) > MAX_LISTED else ""
    return f"spec.sampleIds: {len(res.unknown)} id(s) not in Dataset {spec.datasetRef!r}: {shown}{more}"


def deadline_state(deadline: str, now: datetime, window_days: int) -> tuple[str, str | None]:
    """(time left as text, None or the reason it is at risk). At risk: under a fifth of the window left."""
    end = datetime.strptime(deadline, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    left = (end - now).total_seconds()
    if left <= 0:
        return "0s", "DeadlineMissed"
    text = f"{int(left // 86400)}d{int(left % 86400 // 3600)}h" if left >= 86400 else f"{int(left // 3600)}h{int(left % 3600 // 60)}m"
    return text, ("DeadlineAtRisk" if left < window_days * 86400 / 5 else None)


def ids_digest(ids: list[str]) -> str:
    """A commitment to which ids were forgotten, without repeating them in the certificate."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class ModelPurge:
    """What one model's purge record says (written by the body after a purge)."""

    model: str
    uid: str
    revision: int
    published_version: int
    record: dict[str, Any]


def certificate(request: str, dataset: str, revision: int, samples: int, digest: str,
                purges: list[ModelPurge], requested_at: str, completed_at: str) -> dict[str, Any]:
    models = []
    for p in purges:
        held = {k: v for k, v in p.record.get("purgedCheckpoints", {}).items() if revision in v}
        vers = sorted(int(n) for n, v in p.record.get("purgedVersions", {}).items() if revision in v)
        models.append({
            "model": p.model,
            "uid": p.uid,
            "versionsThatHeldSamples": vers,
            "publishedVersion": p.published_version,
            "retrainedShards": p.record.get("retrainedShards", []),
            "purgedCheckpoints": sorted(held),
            "purgedVersions": vers,
            "newCheckpoints": p.record.get("newCheckpoints", []),
            "retrainSeconds": p.record.get("retrainSeconds"),
        })
    return {
        "request": request,
        "dataset": dataset,
        "datasetRevision": revision,
        "samplesForgotten": samples,
        "sampleIdsSha256": digest,
        "models": models,
        "requestedAt": requested_at,
        "completedAt": completed_at,
    }


def chain_entry(seq: int, prev_hash: str, cert: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry, hash-chained to the one before it."""
    body = {"seq": seq, "prevHash": prev_hash, "certificate": cert}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {**body, "hash": h}


def verify_chain(entries: list[dict[str, Any]]) -> list[str]:
    """Problems found in a ledger (empty when it is intact)."""
    problems, prev = [], "0" * 64
    for i, e in enumerate(entries):
        body = {k: e.get(k) for k in ("seq", "prevHash", "certificate")}
        h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        if e.get("seq") != i + 1:
            problems.append(f"entry {i + 1}: sequence number {e.get('seq')} out of order")
        if e.get("prevHash") != prev:
            problems.append(f"entry {i + 1}: prevHash does not match the entry before")
        if e.get("hash") != h:
            problems.append(f"entry {i + 1}: hash does not match its content (tampered)")
        prev = e.get("hash", "")
    return problems
