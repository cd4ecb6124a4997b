"""ForgetRequests: accept (resolve and tombstone), then certify. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shardwise.api.forget import ForgetRequestSpec
from shardwise.api.model import ShardedModelStatus
from shardwise.brain.revision import Resolution, Tombstones, resolve_ids, resolve_owner

MAX_LISTED = 10


def resolve(spec: ForgetRequestSpec, ids: np.ndarray, owners: np.ndarray, tombstones: Tombstones,
            tag: Callable[[str, str], bytes]) -> Resolution:
    """tag(domain, text): the Dataset's keyed tag ("id" or "owner"), to recognise forgotten samples."""
    if spec.ownerKey is not None:
        return resolve_owner(owners, spec.ownerKey, tag("owner", spec.ownerKey), tombstones)
    return resolve_ids(ids, spec.sampleIds, [tag("id", i) for i in spec.sampleIds], tombstones)


def rejection(spec: ForgetRequestSpec, res: Resolution) -> str | None:
    """Why a request cannot be accepted, or None. Unknown ids are never guessed."""
    if not res.unknown:
        return None
    if spec.ownerKey is not None:
        return f"spec.ownerKey: no sample of owner {spec.ownerKey!r} in Dataset {spec.datasetRef!r}"
    shown = ", ".join(repr(u) for u in res.unknown[:MAX_LISTED])
    more = f" and {len(res.unknown) - MAX_LISTED} more" if len(res.unknown) > MAX_LISTED else ""
    return f"spec.sampleIds: {len(res.unknown)} id(s) not in Dataset {spec.datasetRef!r}: {shown}{more}"


def waiting_for(revision: int, models: list[tuple[str, ShardedModelStatus | None]]) -> tuple[str, str] | None:
    """(phase, message) of a ForgetRequest tombstoned at `revision` while some model on its Dataset has not
    yet published and purged that revision; None once every one has.

    Queued while a model has never published (its first training comes first), WaitingForAdmission while
    one that owes the retrain is held by its queue, Retraining otherwise; a failed model is named with
    what to do about it."""
    waiting = [name for name, st in models
               if st is None or (st.purgedRevision or 0) < revision or (st.datasetRevision or 0) < revision]
    if not waiting:
        return None
    statuses = dict(models)
    phase = ("Queued" if any(st is None or st.publishedVersion is None for st in statuses.values())
             else "WaitingForAdmission" if any((st := statuses[n]) is not None and st.phase == "WaitingForAdmission"
                                               for n in waiting)
             else "Retraining")
    failed = [f"{n} failed: {c.message}" for n in waiting
              if (st := statuses[n]) is not None and st.phase == "Failed" and (c := st.condition("Failed")) is not None]
    return phase, f"waiting for {', '.join(waiting)} to retrain, publish and purge" + "".join(
        f"; {f} (fix it, or delete the model: its checkpoints are then purged)" for f in failed)


def deadline_state(deadline: str, now: datetime, window_days: int) -> tuple[str, str | None]:
    """(time left as text, None or the reason it is at risk). At risk: under a fifth of the window left."""
    end = datetime.strptime(deadline, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    left = (end - now).total_seconds()
    if left <= 0:
        return "0s", "DeadlineMissed"
    text = (f"{int(left // 86400)}d{int(left % 86400 // 3600)}h" if left >= 86400
            else f"{int(left // 3600)}h{int(left % 3600 // 60)}m")
    return text, ("DeadlineAtRisk" if left < window_days * 86400 / 5 else None)


@dataclass(frozen=True)
class ModelPurge:
    """One model's purge record (written by the body after its purge), and where this request's
    training samples lay in that model: its (shard, slice) cells."""

    model: str
    uid: str
    revision: int
    published_version: int
    record: dict[str, Any]
    cells: frozenset[tuple[int, int]] = frozenset()
    deleted: bool = False  # the ShardedModel was deleted, its checkpoints retained (storagePolicy Retain)


def _holds(cell: tuple[int, int] | list[int] | None, cells: frozenset[tuple[int, int]]) -> bool:
    """A checkpoint of (shard, slice) was trained on a sample of `cells` (when read before its forget)."""
    if cell is None:  # a checkpoint of unknown place: assume the worst
        return True
    k, s = int(cell[0]), int(cell[1])
    return any(ck == k and cs <= s for ck, cs in cells)


def model_entry(p: ModelPurge, revision: int) -> dict[str, Any]:
    """What one request caused in one model: only the objects that held its own samples, the retrains of
    the shards that held them (at its revision or later), and their new checkpoints."""
    rec = p.record
    cells_of = rec.get("purgedCells", {})
    held = sorted(k for k, revs in rec.get("purgedCheckpoints", {}).items()
                  if revision in revs and _holds(cells_of.get(k), p.cells))
    held_set = set(held)
    vers = sorted(int(n) for n, revs in rec.get("purgedVersions", {}).items()
                  if revision in revs and any(k in held_set for k in rec.get("versionHeld", {}).get(n, [])))
    shards = {k for k, _ in p.cells}
    jobs = [j for j in rec.get("jobs", []) if j["shard"] in shards and int(j.get("revision", 0)) >= revision]
    starts = {j["shard"]: j["fromSlice"] for j in jobs}
    new = [c for c in rec.get("newCheckpoints", []) if c["shard"] in starts and c["slice"] >= starts[c["shard"]]]
    entry = {
        "model": p.model,
        "uid": p.uid,
        "versionsThatHeldSamples": vers,
        "publishedVersion": p.published_version,
        "retrainedShards": [{"shard": j["shard"], "fromSlice": j["fromSlice"]} for j in jobs],
        "purgedCheckpoints": held,
        "purgedVersions": vers,
        "newCheckpoints": new,
        "retrainSeconds": round(sum(j.get("computeSeconds") or 0 for j in jobs), 3),
    }
    if p.deleted:
        entry["deleted"] = True  # its retained checkpoints were purged too; it serves nothing
    return entry


def certificate(request: str, dataset: str, revision: int | None, samples: int, already: int, digest: str,
                purges: list[ModelPurge], requested_at: str, completed_at: str) -> dict[str, Any]:
    """revision None: a request that changed nothing (every sample it names was forgotten before)."""
    return {
        "request": request,
        "dataset": dataset,
        "datasetRevision": revision,
        "samplesForgotten": samples,
        "alreadyForgotten": already,
        "sampleIdsHmac": digest,
        "models": [model_entry(p, revision) for p in purges] if revision is not None else [],
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
