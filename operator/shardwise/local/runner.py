"""The local body: reconcile every resource of a namespace until nothing is left to do.

It gathers observations from the store and the process table, asks the brain,
and carries out the actions. It holds no decision of its own.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shardwise.api import Dataset, ForgetRequest, ShardedModel
from shardwise.api.common import iso, now
from shardwise.api.dataset import DatasetStatus
from shardwise.api.forget import ForgetRequestStatus
from shardwise.api.model import ShardedModelStatus
from shardwise.brain import forget as fbrain
from shardwise.brain.lineage import CheckpointRef, slice_fingerprints
from shardwise.brain.model import Evaluate, ModelObservation, Publish, Purge, StartJob, reconcile_model
from shardwise.brain.purge import plan_purge
from shardwise.brain.versions import JobRecord, VersionManifest
from shardwise.data.sources import load_source
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.errors import NotFound, ShardwiseError
from shardwise.local.executor import EXIT_BAD_CONFIG, LocalExecutor
from shardwise.local.registry import Registry
from shardwise.store.base import Store
from shardwise.store.layout import Layout

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class LocalRunner:
    store: Store
    namespace: str = "default"
    parallel: int = 2
    log: Log = _stderr
    log_dir: Path | None = None
    executor: LocalExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.layout = Layout(self.namespace)
        self.registry = Registry(self.store, self.namespace)
        self.datasets = DatasetStore(self.store, self.layout)
        self.executor = LocalExecutor(self.store.uri, self.parallel, log_dir=self.log_dir)
        self._views: dict[tuple[str, int], DatasetView] = {}
        self._job_exits: dict[str, tuple[int, str]] = {}

    # -- the loop -------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> None:
        """Reconcile until idle: no job running and a pass that changed nothing."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            while True:
                for f in self.executor.poll():
                    self._job_exits[f.name] = (f.exit_code, f.log_tail)
                changed = self.step()
                if not changed and not self.executor.procs:
                    return
                if deadline is not None and time.perf_counter() > deadline:
                    raise TimeoutError(f"reconcile did not settle within {timeout} s")
                if not changed:
                    self.executor.wait(0.5)
        finally:
            self.executor.stop_all()

    def step(self) -> bool:
        changed = False
        for ds in self.registry.list(Dataset):
            changed |= self.reconcile_dataset(ds)
        changed |= self.accept_forgets()
        for m in self.registry.list(ShardedModel):
            changed |= self.reconcile_model(m)
        for fr in self.registry.list(ForgetRequest):
            changed |= self.complete_forget(fr)
        return changed

    # -- datasets ---------------------------------------------------------------------
    def view(self, name: str, revision: int | None = None) -> DatasetView:
        rev = self.datasets.current_revision(name) if revision is None else revision
        key = (name, rev)
        if key not in self._views:
            self._views[key] = self.datasets.view(name, rev)
        return self._views[key]

    def reconcile_dataset(self, ds: Dataset) -> bool:
        st = ds.status or DatasetStatus()
        before = st.model_dump()
        st.observedGeneration = ds.metadata.generation
        if not self.datasets.exists(ds.name):
            if st.phase == "Failed":
                return False
            self.log(f"dataset/{ds.name}: ingesting {ds.spec.source.builtin or ds.spec.source.uri}")
            try:
                table = load_source(ds.spec.source)
                self.datasets.ingest(ds.name, ds.spec, table)
            except ShardwiseError as e:
                st.phase = "Failed"
                st.set_condition("Ready", "False", "IngestFailed", str(e))
                ds.status = st
                self.registry.put_status(ds)
                self.log(f"dataset/{ds.name}: ingest failed: {e}")
                return True
        v = self.view(ds.name)
        st.phase = "Ready"
        st.revision = v.state.revision
        st.samples = len(v.table)
        st.activeSamples = int(v.state.active.sum())
        st.tombstoned = st.samples - st.activeSamples
        st.classes = len(v.table.class_names)
        st.set_condition("Ready", "True", "Ingested", f"revision {st.revision}")
        if st.model_dump() != before:
            ds.status = st
            self.registry.put_status(ds)
            return True
        return False

    # -- forget requests: accept (tombstone) ------------------------------------------
    def accept_forgets(self) -> bool:
        """Every pending request of a dataset becomes part of ONE new revision."""
        pending: dict[str, list[ForgetRequest]] = {}
        for fr in self.registry.list(ForgetRequest):
            if fr.status is None or (fr.status.phase == "Pending" and fr.status.datasetRevision is None):
                pending.setdefault(fr.spec.datasetRef, []).append(fr)
        changed = False
        for ds_name, requests in pending.items():
            if not self.datasets.exists(ds_name):
                for fr in requests:
                    changed |= self._set_forget(fr, "Pending", "Ready", "False", "DatasetNotReady",
                                                f"waiting for Dataset {ds_name!r}")
                continue
            v = self.view(ds_name)
            state = v.state
            accepted: list[tuple[ForgetRequest, np.ndarray, int]] = []
            for fr in requests:
                res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, state.tombstoned_at)
                why = fbrain.rejection(fr.spec, res)
                if why:
                    self._set_forget(fr, "Failed", "Failed", "True", "UnknownSamples", why)
                    self.log(f"forgetrequest/{fr.name}: rejected: {why}")
                    changed = True
                    continue
                accepted.append((fr, res.indices, len(res.already_forgotten)))
            if not accepted:
                continue
            idx = np.unique(np.concatenate([a[1] for a in accepted]))
            new = state.forget(idx)
            names = [a[0].name for a in accepted]
            self.datasets.write_revision(ds_name, new, {"kind": "forget", "requests": names, "samples": int(idx.size)})
            scrubbed = self.datasets.scrub(ds_name)
            self.log(f"dataset/{ds_name}: revision {new.revision} tombstones {idx.size} sample(s) "
                     f"for {', '.join(names)} (payload rows scrubbed: {scrubbed})")
            for fr, ix, already in accepted:
                st = fr.status or ForgetRequestStatus()
                st.datasetRevision = new.revision
                st.samples = int(ix.size)
                st.alreadyForgotten = already
                st.acceptedAt = iso(now())
                created = fr.metadata.creationTimestamp or st.acceptedAt
                st.deadline = _plus_days(created, fr.spec.deadlineDays)
                st.phase = "Retraining"
                st.set_condition("Progressing", "True", "Tombstoned", f"dataset revision {new.revision}")
                fr.status = st
                self.registry.put_status(fr)
            changed = True
        return changed

    def _set_forget(self, fr: ForgetRequest, phase: str, ctype: str, cstatus, reason: str, msg: str) -> bool:
        st = fr.status or ForgetRequestStatus()
        before = st.model_dump(exclude={"conditions"}), [(c.type, c.status, c.reason, c.message) for c in st.conditions]
        st.phase = phase
        st.observedGeneration = fr.metadata.generation
        st.message = msg
        st.set_condition(ctype, cstatus, reason, msg)
        after = st.model_dump(exclude={"conditions"}), [(c.type, c.status, c.reason, c.message) for c in st.conditions]
        if before == after:
            return False
        fr.status = st
        self.registry.put_status(fr)
        return True

    # -- models -----------------------------------------------------------------------
    def observe_model(self, m: ShardedModel) -> ModelObservation:
        status = m.status or ShardedModelStatus()
        L, uid = self.layout, m.metadata.uid or "nouid"
        revision = fps = None
        if self.datasets.exists(m.spec.datasetRef):
            v = self.view(m.spec.datasetRef)
            revision = v.state.revision
            fps = self._fingerprints(m, v)
        published = None
        try:
            n = int(self.store.get_json(L.current(m.name, uid))["version"])
            published = VersionManifest.from_dict(self.store.get_json(L.version(m.name, uid, n)))
        except NotFound:
            pass
        return ModelObservation(
            name=m.name, spec=m.spec, status=status, generation=m.metadata.generation,
            revision=revision, fingerprints=fps, published=published, jobs=self._jobs(m),
            purged_revision=status.purgedRevision or 0, evaluated_version=status.accuracyVersion,
        )

    def _fingerprints(self, m: ShardedModel, v: DatasetView) -> list[list[str]]:
        a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
        return slice_fingerprints(a, v.state)

    def _jobs(self, m: ShardedModel) -> list[JobRecord]:
        L, uid = self.layout, m.metadata.uid or "nouid"
        prefix = f"{L.model(m.name, uid)}/jobs/"
        names = sorted({k[len(prefix):].split("/")[0] for k in self.store.list(prefix)})
        out = []
        for name in names:
            try:
                req = self.store.get_json(L.job_request(m.name, uid, name))
            except NotFound:
                continue
            try:
                st = self.store.get_json(L.job_status(m.name, uid, name))
            except NotFound:
                st = {}
            if name in self.executor.procs:
                state = "running"
            elif st.get("state") in ("succeeded", "failed"):
                state = st["state"]
            elif name in self._job_exits:
                state = "failed"
                code, tail = self._job_exits[name]
                st = {"message": f"trainer exited with code {code}: {tail.strip().splitlines()[-1:] or ''}"}
            else:
                continue  # interrupted by a restart: the brain will start it again
            out.append(JobRecord(
                name=name, shard=int(req["shard"]), from_slice=int(req["fromSlice"]), revision=int(req["revision"]),
                state=state, chain=tuple(CheckpointRef.from_dict(d) for d in st.get("chain", [])),
                message=st.get("message", ""), seconds=float(st.get("computeSeconds", 0.0)),
                extra={"wallSeconds": st.get("wallSeconds")},
            ))
        return out

    def reconcile_model(self, m: ShardedModel) -> bool:
        obs = self.observe_model(m)
        actions, status = reconcile_model(obs)
        changed = False
        for a in actions:
            if isinstance(a, StartJob):
                changed |= self._start_job(m, a, obs)
            elif isinstance(a, Publish):
                self._publish(m, a.manifest, obs)
                changed = True
            elif isinstance(a, Purge):
                status.purgedRevision = self._purge(m, a.revision, obs)
                changed = True
            elif isinstance(a, Evaluate):
                status.accuracy = self.evaluate(m, obs.published)
                status.accuracyVersion = a.version
                self.log(f"shardedmodel/{m.name}: version {a.version} held-out accuracy {status.accuracy:.4f}")
                changed = True
        old = (m.status or status).model_dump(exclude={"conditions"})
        if changed or status.model_dump(exclude={"conditions"}) != old or m.status is None:
            if m.status is None or status.phase != m.status.phase:
                self.log(f"shardedmodel/{m.name}: {status.phase} ({status.shardsReadyText} shards ready)")
            m.status = status
            self.registry.put_status(m)
            changed = True
        return changed

    def _start_job(self, m: ShardedModel, a: StartJob, obs: ModelObservation) -> bool:
        if not self.executor.has_room() or a.name in self.executor.procs:
            return False
        L, uid = self.layout, m.metadata.uid or "nouid"
        request = {
            "job": a.name, "namespace": self.namespace, "model": m.name, "uid": uid,
            "spec": m.spec.model_dump(mode="json"), "dataset": m.spec.datasetRef,
            "shard": a.shard, "fromSlice": a.from_slice, "revision": a.revision, "purpose": a.purpose,
            "parent": a.parent.to_dict() if a.parent else None, "keep": [r.to_dict() for r in a.keep],
        }
        key = L.job_request(m.name, uid, a.name)
        self.store.put_json(key, request)
        self.store.delete(L.job_status(m.name, uid, a.name))
        self._job_exits.pop(a.name, None)
        self.executor.start(a.name, key)
        self.log(f"shardedmodel/{m.name}: {a.purpose} shard {a.shard} slices {a.from_slice}..{m.spec.slices - 1} "
                 f"at revision {a.revision} (job {a.name})")
        return True

    def _publish(self, m: ShardedModel, manifest: VersionManifest, obs: ModelObservation) -> None:
        """Write the version, then swap current.json: the one atomic step that publishes."""
        L, uid = self.layout, m.metadata.uid or "nouid"
        old_keys = obs.published.keys() if obs.published else set()
        new_refs = [r for chain in manifest.chains for r in chain if r.key not in old_keys]
        finished = {(j.shard, j.from_slice, j.revision): j for j in obs.jobs if j.state == "succeeded"}
        used = [j for j in finished.values() if any(j.chain == c for c in manifest.chains)]
        doc = manifest.to_dict() | {
            "created": iso(now()),
            "model": m.name,
            "aggregation": m.spec.aggregation,
            "previousVersion": obs.published.version if obs.published else None,
            "newCheckpoints": [{"key": r.key, "sha256": r.sha256, "shard": r.shard, "slice": r.slice} for r in new_refs],
            "jobs": [{"name": j.name, "shard": j.shard, "fromSlice": j.from_slice, "computeSeconds": j.seconds,
                      "wallSeconds": j.extra.get("wallSeconds")} for j in used],
        }
        self.store.put_json(L.version(m.name, uid, manifest.version), doc)
        self.store.put_json(L.current(m.name, uid), {"version": manifest.version})
        self.log(f"shardedmodel/{m.name}: published version {manifest.version} "
                 f"(dataset revision {manifest.revision}, {len(new_refs)} new checkpoint(s))")

    def _purge(self, m: ShardedModel, revision: int, obs: ModelObservation) -> int:
        L, uid = self.layout, m.metadata.uid or "nouid"
        v = self.view(m.spec.datasetRef, revision)
        a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
        prefix = L.model(m.name, uid) + "/"
        metas = [k for k in self.store.list(prefix) if k.endswith("/meta.json") and "/shard-" in k]
        stored = [CheckpointRef.from_dict(self.store.get_json(k)) for k in metas]
        vkeys = [k for k in self.store.list(L.versions(m.name, uid)) if k.endswith(".json")]
        vdocs = {int(k.rsplit("/", 1)[1][:-5]): self.store.get_json(k) for k in vkeys}
        versions = [VersionManifest.from_dict(d) for d in vdocs.values()]
        pub = obs.published.version if obs.published else None
        plan = plan_purge(stored, versions, pub, a, v.state.tombstoned_at)
        # Versions first (nothing may point at a missing checkpoint), then checkpoints.
        for n in plan.versions:
            self.store.delete(L.version(m.name, uid, n))
        for ref in plan.checkpoints:
            self.store.delete(ref.key)
            self.store.delete(L.checkpoint_meta(ref.key))
        purged_keys = {r.key for r in plan.checkpoints}
        for j in obs.jobs:  # finished job records are history once published; drop them
            if j.state != "running":
                self.store.delete_prefix(f"{L.model(m.name, uid)}/jobs/{j.name}/")
        pubdoc = vdocs.get(pub, {}) if pub else {}
        record = {
            "revision": revision,
            "publishedVersion": pub,
            "purgedCheckpoints": {k: v for k, v in plan.held.items() if not k.startswith("version:")},
            "purgedVersions": {k.split(":")[1]: v for k, v in plan.held.items() if k.startswith("version:")},
            "newCheckpoints": pubdoc.get("newCheckpoints", []),
            "retrainedShards": [{"shard": j["shard"], "fromSlice": j["fromSlice"]} for j in pubdoc.get("jobs", [])],
            "retrainSeconds": sum(j.get("computeSeconds") or 0 for j in pubdoc.get("jobs", [])),
            "at": iso(now()),
        }
        self.store.put_json(L.purge_record(m.name, uid, revision), record)
        if not plan.empty:
            self.log(f"shardedmodel/{m.name}: purged {len(purged_keys)} checkpoint(s) and "
                     f"{len(plan.versions)} version(s) that held forgotten samples")
        return revision

    def evaluate(self, m: ShardedModel, published: VersionManifest | None) -> float:
        """Held-out accuracy of the published version (runs the trainer's predict in-process)."""
        from shardwise.brain.ensemble import aggregate
        from shardwise_trainer.train import predict_proba

        assert published is not None
        v = self.view(m.spec.datasetRef, published.revision)
        test = np.flatnonzero(~v.train & v.state.active)
        if test.size == 0:
            return float("nan")
        probs = predict_proba(self.store, m.spec, published.finals(), v.table.features[test], len(v.table.class_names))
        pred = aggregate(probs, m.spec.aggregation).argmax(1)
        acc = float((pred == v.state.labels[test]).mean())
        L, uid = self.layout, m.metadata.uid or "nouid"
        self.store.put_json(L.evaluation(m.name, uid, published.version), {"accuracy": acc, "samples": int(test.size)})
        return acc

    # -- forget requests: complete ----------------------------------------------------
    def complete_forget(self, fr: ForgetRequest) -> bool:
        st = fr.status
        if st is None or st.phase in ("Complete", "Failed") or st.datasetRevision is None:
            return False
        T = st.datasetRevision
        models = [m for m in self.registry.list(ShardedModel) if m.spec.datasetRef == fr.spec.datasetRef]
        waiting = [m.name for m in models
                   if not m.status or (m.status.purgedRevision or 0) < T or (m.status.datasetRevision or 0) < T]
        if waiting:
            msg = f"waiting for {', '.join(waiting)} to retrain, publish and purge"
            phase = "Queued" if any(m.status and m.status.publishedVersion is None for m in models) else "Retraining"
            return self._set_forget(fr, phase, "Progressing", "True", "Retraining", msg)
        purges = []
        for m in models:
            uid = m.metadata.uid or "nouid"
            keys = sorted(k for k in self.store.list(f"{self.layout.model(m.name, uid)}/purges/") if k.endswith(".json"))
            recs = [self.store.get_json(k) for k in keys]
            rec = next((r for r in recs if r["revision"] >= T), recs[-1] if recs else {})
            purges.append(fbrain.ModelPurge(m.name, uid, rec.get("revision", T), rec.get("publishedVersion") or 0, rec))
        ids = self._forgotten_ids(fr)
        cert = fbrain.certificate(fr.name, fr.spec.datasetRef, T, st.samples or 0, fbrain.ids_digest(ids),
                                  purges, st.acceptedAt or "", iso(now()))
        cert["ledgerEntry"] = self._append_ledger(fr.name, cert)
        st.certificate = cert
        st.completedAt = cert["completedAt"]
        st.phase = "Complete"
        st.message = f"forgotten from {len(models)} model(s)"
        st.set_condition("Progressing", "False", "Complete", "")
        st.set_condition("Ready", "True", "Complete", st.message)
        fr.status = st
        self.registry.put_status(fr)
        self.log(f"forgetrequest/{fr.name}: Complete ({st.samples} sample(s), {len(models)} model(s))")
        return True

    def _forgotten_ids(self, fr: ForgetRequest) -> list[str]:
        v = self.view(fr.spec.datasetRef)
        hit = np.flatnonzero(v.state.tombstoned_at == fr.status.datasetRevision)  # type: ignore[union-attr]
        res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, np.zeros_like(v.state.tombstoned_at))
        return sorted(set(v.table.ids[np.intersect1d(hit, res.indices)].tolist()))

    def _append_ledger(self, request: str, cert: dict) -> str:
        keys = sorted(k for k in self.store.list(self.layout.ledger()) if k.endswith(".json"))
        prev = self.store.get_json(keys[-1])["hash"] if keys else "0" * 64
        entry = fbrain.chain_entry(len(keys) + 1, prev, cert)
        key = self.layout.ledger_entry(len(keys) + 1, request)
        self.store.put_json(key, entry)
        return key


def _plus_days(ts: str, days: int) -> str:
    from datetime import datetime, timedelta

    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")
    return (t + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
