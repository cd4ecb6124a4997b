"""Carry out the brain's decisions on the store, for either body.

Both the local body (processes) and the kube body (Jobs, API server) observe
and act on the store the same way; only how they list resources, run jobs and
persist status differs. Nothing here decides: the decisions are in brain/.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Literal

import numpy as np

from shardwise.api import Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import iso, now
from shardwise.api.dataset import DatasetStatus
from shardwise.api.experiment import EXPERIMENT_LABEL
from shardwise.api.forget import ForgetRequestStatus
from shardwise.api.model import ShardedModelStatus
from shardwise.brain import forget as fbrain
from shardwise.brain.experiment import ExperimentObservation
from shardwise.brain.lineage import CheckpointRef, slice_fingerprints
from shardwise.brain.model import ModelObservation, StartJob
from shardwise.brain.purge import plan_purge
from shardwise.brain.versions import JobRecord, VersionManifest
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.errors import CorruptObject, InvalidInput, NotFound, ShardwiseError
from shardwise.faults import fault_point
from shardwise.store.base import Store
from shardwise.store.layout import Layout

Log = Callable[[str], None]
VIEW_CACHE = 4  # dataset revisions kept loaded (a pass needs the current one and the one it purges)
# How a body sees a job: "running", "succeeded", "failed", or None when it is not
# running anywhere (never started, or interrupted by a restart: start it again).
JobLiveness = Callable[[str, dict], Literal["running", "succeeded", "failed"] | None]


def _uid(m: ShardedModel) -> str:
    return m.metadata.uid or "nouid"


def _active_positions(v: DatasetView, dataset: str, ids: list[str], gone: str) -> dict[str, int]:
    """Row positions of the Dataset's samples, after checking that every one of `ids` is a sample
    that is still active (the message `gone` names the inactive ones). Nothing is written before."""
    pos = {s: i for i, s in enumerate(v.table.ids.tolist())}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise InvalidInput(f"--id: {len(unknown)} id(s) not in Dataset {dataset!r}: {', '.join(unknown[:10])}")
    inactive = [i for i in ids if not v.state.active[pos[i]]]
    if inactive:
        raise InvalidInput(f"--id: {gone}: {', '.join(inactive[:10])}")
    return pos


class StoreControl:
    def __init__(self, store: Store, namespace: str, log: Log = lambda m: None):
        self.store, self.namespace, self.log = store, namespace, log
        self.layout = Layout(namespace)
        self.datasets = DatasetStore(store, self.layout)
        self._views: dict[tuple[str, int], DatasetView] = {}

    # -- datasets -------------------------------------------------------------------
    def view(self, name: str, revision: int | None = None) -> DatasetView:
        rev = self.datasets.current_revision(name) if revision is None else revision
        key = (name, rev)
        view = self._views.pop(key, None) or self.datasets.view(name, rev)
        self._views[key] = view  # most recent last
        while len(self._views) > VIEW_CACHE:  # each view holds a whole payload: keep a few
            del self._views[next(iter(self._views))]
        return view

    def reconcile_dataset(self, ds: Dataset) -> DatasetStatus:
        """Ingest on first sight; the status of the current revision."""
        from shardwise.data.sources import load_source

        st = (ds.status or DatasetStatus()).model_copy(deep=True)
        st.observedGeneration = ds.metadata.generation
        if not self.datasets.exists(ds.name):
            if st.phase == "Failed":
                return st  # a failed ingest waits for a new spec (or a delete), never a crash loop
            self.log(f"dataset/{ds.name}: ingesting {ds.spec.source.builtin or ds.spec.source.uri}")
            try:
                self.datasets.ingest(ds.name, ds.spec, load_source(ds.spec.source))
            except ShardwiseError as e:
                st.phase = "Failed"
                st.message = str(e)
                st.set_condition("Ready", "False", "IngestFailed", str(e))
                self.log(f"dataset/{ds.name}: ingest failed: {e}")
                return st
        v = self.view(ds.name)
        st.phase = "Ready"
        st.message = ""
        st.revision = v.state.revision
        st.samples = len(v.table)
        st.activeSamples = int(v.state.active.sum())
        st.tombstoned = st.samples - st.activeSamples
        st.classes = len(v.table.class_names)
        st.set_condition("Ready", "True", "Ingested", f"revision {st.revision}")
        return st

    # -- forget requests ----------------------------------------------------------------
    def accept_forgets(self, dataset: str, requests: list[ForgetRequest]) -> dict[str, ForgetRequestStatus]:
        """Resolve pending requests of one dataset and tombstone them all in ONE new revision."""
        out: dict[str, ForgetRequestStatus] = {}
        if not self.datasets.exists(dataset):
            for fr in requests:
                out[fr.name] = _forget_status(fr, "Pending", "Ready", "False", "DatasetNotReady",
                                              f"waiting for Dataset {dataset!r}")
            return out
        v = self.view(dataset)
        done = self._revisions_of(dataset, {fr.name for fr in requests})
        if done:  # tombstoned by a run that died before it could mark them accepted
            self.datasets.scrub(dataset)
        accepted: list[tuple[ForgetRequest, np.ndarray, int]] = []
        for fr in requests:
            if fr.name in done:
                rev = done[fr.name]
                before = np.where(v.state.tombstoned_at >= rev, 0, v.state.tombstoned_at)
                res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, before)
                out[fr.name] = self._accepted(fr, rev, res.indices, len(res.already_forgotten))
                continue
            res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, v.state.tombstoned_at)
            why = fbrain.rejection(fr.spec, res)
            if why:
                out[fr.name] = _forget_status(fr, "Failed", "Failed", "True", "UnknownSamples", why)
                self.log(f"forgetrequest/{fr.name}: rejected: {why}")
            else:
                accepted.append((fr, res.indices, len(res.already_forgotten)))
        if not accepted:
            return out
        idx = np.unique(np.concatenate([a[1] for a in accepted]))
        new = v.state.forget(idx)
        names = [a[0].name for a in accepted]
        self.datasets.write_revision(dataset, new, {"kind": "forget", "requests": names, "samples": int(idx.size)})
        fault_point("dataset.after-revision")
        scrubbed = self.datasets.scrub(dataset)
        self.log(f"dataset/{dataset}: revision {new.revision} tombstones {idx.size} sample(s) "
                 f"for {', '.join(names)} (payload rows scrubbed: {scrubbed})")
        for fr, ix, already in accepted:
            out[fr.name] = self._accepted(fr, new.revision, ix, already)
        return out

    def _accepted(self, fr: ForgetRequest, revision: int, indices: np.ndarray, already: int) -> ForgetRequestStatus:
        st = (fr.status or ForgetRequestStatus()).model_copy(deep=True)
        st.observedGeneration = fr.metadata.generation
        st.datasetRevision = revision
        st.samples = int(indices.size)
        st.alreadyForgotten = already
        st.acceptedAt = iso(now())
        st.deadline = _plus_days(fr.metadata.creationTimestamp or st.acceptedAt, fr.spec.deadlineDays)
        st.phase = "Retraining"
        st.set_condition("Progressing", "True", "Tombstoned", f"dataset revision {revision}")
        return st

    def _revisions_of(self, dataset: str, names: set[str]) -> dict[str, int]:
        """Requests among `names` that a revision already tombstoned -> that revision.

        Read only when requests are pending (rare), newest first: a crash between writing the
        revision and marking the requests accepted must not tombstone them again.
        """
        found: dict[str, int] = {}
        for rev in range(self.datasets.current_revision(dataset), 1, -1):
            change = self.store.get_json(self.layout.dataset_revision(dataset, rev)).get("change", {})
            if change.get("kind") == "forget":
                for name in set(change.get("requests", [])) & names - found.keys():
                    found[name] = rev
            if len(found) == len(names):
                break
        return found

    def complete_forget(self, fr: ForgetRequest, models: list[ShardedModel]) -> ForgetRequestStatus | None:
        """The new status once every model on the dataset has published and purged; None if unchanged."""
        st = fr.status
        if st is None or st.phase in ("Complete", "Failed") or st.datasetRevision is None:
            return None
        T = st.datasetRevision
        waiting = [m.name for m in models
                   if not m.status or (m.status.purgedRevision or 0) < T or (m.status.datasetRevision or 0) < T]
        if waiting:
            phase = "Queued" if any(m.status is None or m.status.publishedVersion is None for m in models) \
                else "Retraining"
            new = _forget_status(fr, phase, "Progressing", "True", "Retraining",
                                 f"waiting for {', '.join(waiting)} to retrain, publish and purge")
            if new.deadline:
                new.timeLeft, risk = fbrain.deadline_state(new.deadline, now(), fr.spec.deadlineDays)
                if risk:
                    new.set_condition("DeadlineAtRisk", "True", risk, f"{new.timeLeft} left to {new.deadline}")
            return None if new.same_as(st) else new
        purges = []
        for m in models:
            prefix = f"{self.layout.model(m.name, _uid(m))}/purges/"
            recs = [self.store.get_json(k) for k in sorted(self.store.list(prefix)) if k.endswith(".json")]
            rec = next((r for r in recs if r["revision"] >= T), recs[-1] if recs else {})
            purges.append(fbrain.ModelPurge(m.name, _uid(m), rec.get("revision", T),
                                            rec.get("publishedVersion") or 0, rec))
        cert = self._ledgered(fr.name, T)  # a run that died right after appending it
        if cert is None:
            cert = fbrain.certificate(fr.name, fr.spec.datasetRef, T, st.samples or 0,
                                      fbrain.ids_digest(self._forgotten_ids(fr)), purges, st.acceptedAt or "",
                                      iso(now()))
            cert["ledgerEntry"] = self._append_ledger(fr.name, cert)
        fault_point("forget.after-ledger")
        new = st.model_copy(deep=True)
        new.certificate = cert
        new.completedAt = cert["completedAt"]
        new.phase = "Complete"
        new.timeLeft = None
        new.conditions = [c for c in new.conditions if c.type != "DeadlineAtRisk"]
        new.message = f"forgotten from {len(models)} model(s)"
        new.set_condition("Progressing", "False", "Complete", "")
        new.set_condition("Ready", "True", "Complete", new.message)
        self.log(f"forgetrequest/{fr.name}: Complete ({st.samples} sample(s), {len(models)} model(s))")
        return new

    def _forgotten_ids(self, fr: ForgetRequest) -> list[str]:
        v = self.view(fr.spec.datasetRef)
        hit = np.flatnonzero(v.state.tombstoned_at == fr.status.datasetRevision)  # type: ignore[union-attr]
        res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, np.zeros_like(v.state.tombstoned_at))
        return sorted(set(v.table.ids[np.intersect1d(hit, res.indices)].tolist()))

    def _ledgered(self, request: str, revision: int) -> dict | None:
        """The certificate already in the ledger for this request and revision, if any."""
        for key in sorted(self.store.list(self.layout.ledger()), reverse=True):
            if key.endswith(f"-{request}.json"):
                cert = self.store.get_json(key)["certificate"]
                if cert.get("datasetRevision") == revision:
                    return cert | {"ledgerEntry": key}
        return None

    def _append_ledger(self, request: str, cert: dict) -> str:
        keys = sorted(k for k in self.store.list(self.layout.ledger()) if k.endswith(".json"))
        prev = self.store.get_json(keys[-1])["hash"] if keys else "0" * 64
        key = self.layout.ledger_entry(len(keys) + 1, request)
        self.store.put_json(key, fbrain.chain_entry(len(keys) + 1, prev, cert))
        return key

    def relabel(self, dataset: str, labels: dict[str, str], by: str) -> int:
        """A label correction as a new Dataset revision recording who and when. Returns the revision.

        Ids and label names are checked first; nothing is written unless all are valid.
        """
        v = self.view(dataset)
        pos = _active_positions(v, dataset, list(labels), gone="dropped or forgotten samples cannot be relabelled")
        classes = {c: i for i, c in enumerate(v.table.class_names)}
        bad = sorted({lab for lab in labels.values() if lab not in classes})
        if bad:
            raise InvalidInput(f"--label: {', '.join(map(repr, bad))} is not a class of Dataset {dataset!r} "
                               f"(classes: {', '.join(v.table.class_names)})")
        idx = np.array([pos[i] for i in labels], dtype=np.int64)
        new = v.state.relabel(idx, np.array([classes[lab] for lab in labels.values()], dtype=np.int64))
        self.datasets.write_revision(dataset, new, {
            "kind": "relabel", "by": by, "at": iso(now()),
            "labels": [{"id": i, "from": v.table.class_names[int(v.state.labels[pos[i]])], "to": lab}
                       for i, lab in labels.items()]})
        self.log(f"dataset/{dataset}: revision {new.revision} relabels {len(labels)} sample(s) (by {by})")
        return new.revision

    def drop(self, dataset: str, ids: list[str], by: str) -> int:
        """Take samples out of training (a tombstone revision recording who and when). Returns the revision.

        A curation step, not a GDPR forget: no ForgetRequest, certificate or payload scrub. Ids are
        checked first; nothing is written unless all are valid.
        """
        v = self.view(dataset)
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise InvalidInput("--id: no sample ids to drop")
        pos = _active_positions(v, dataset, ids, gone="already dropped or forgotten")
        new = v.state.forget(np.array([pos[i] for i in ids], dtype=np.int64))
        self.datasets.write_revision(dataset, new, {"kind": "drop", "by": by, "at": iso(now()), "ids": ids})
        self.log(f"dataset/{dataset}: revision {new.revision} drops {len(ids)} sample(s) (by {by})")
        return new.revision

    # -- models -------------------------------------------------------------------------
    def observe_model(self, m: ShardedModel, liveness: JobLiveness) -> ModelObservation:
        status = m.status or ShardedModelStatus()
        revision = fps = None
        if self.datasets.exists(m.spec.datasetRef):
            v = self.view(m.spec.datasetRef)
            revision = v.state.revision
            a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
            fps = slice_fingerprints(a, v.state)
        jobs = self.job_records(m, liveness)
        return ModelObservation(
            name=m.name, spec=m.spec, status=status, generation=m.metadata.generation,
            revision=revision, fingerprints=fps, published=self.published(m), jobs=jobs,
            purged_revision=status.purgedRevision or 0, evaluated_version=status.accuracyVersion,
            corrupt=self._still_corrupt({j.corrupt for j in jobs if j.state == "failed" and j.corrupt}),
        )

    def _still_corrupt(self, keys: set[str]) -> frozenset[str]:
        """Keys a trainer reported corrupt that still fail their check (a rebuild may have replaced them)."""
        bad = set()
        for key in keys:
            try:
                self.store.get_verified(key)
            except (CorruptObject, NotFound):
                bad.add(key)
        return frozenset(bad)

    def published(self, m: ShardedModel) -> VersionManifest | None:
        L = self.layout
        try:
            n = int(self.store.get_json(L.current(m.name, _uid(m)))["version"])
            return VersionManifest.from_dict(self.store.get_json(L.version(m.name, _uid(m), n)))
        except NotFound:
            return None

    def job_records(self, m: ShardedModel, liveness: JobLiveness) -> list[JobRecord]:
        L, uid = self.layout, _uid(m)
        prefix = f"{L.model(m.name, uid)}/jobs/"
        out = []
        for name in sorted({k[len(prefix):].split("/")[0] for k in self.store.list(prefix)}):
            try:
                req = self.store.get_json(L.job_request(m.name, uid, name))
            except NotFound:
                continue
            try:
                st = self.store.get_json(L.job_status(m.name, uid, name))
            except NotFound:
                st = {}
            state = liveness(name, st)
            if state is None:
                continue
            out.append(JobRecord(
                name=name, shard=int(req["shard"]), from_slice=int(req["fromSlice"]), revision=int(req["revision"]),
                state=state, chain=tuple(CheckpointRef.from_dict(d) for d in st.get("chain", [])),
                message=st.get("message", ""), seconds=float(st.get("computeSeconds", 0.0)), corrupt=st.get("corrupt", ""),
                slices_done=int(st.get("slicesDone", 0)), extra={"wallSeconds": st.get("wallSeconds")},
            ))
        return out

    def write_job_request(self, m: ShardedModel, a: StartJob) -> str:
        """The trainer's whole input, in the store; the Job or process only names it."""
        L, uid = self.layout, _uid(m)
        request = {
            "job": a.name, "namespace": self.namespace, "model": m.name, "uid": uid,
            "spec": m.spec.model_dump(mode="json"), "dataset": m.spec.datasetRef,
            "shard": a.shard, "fromSlice": a.from_slice, "revision": a.revision, "purpose": a.purpose,
            "parent": a.parent.to_dict() if a.parent else None, "keep": [r.to_dict() for r in a.keep],
        }
        key = L.job_request(m.name, uid, a.name)
        self.store.put_json(key, request)
        self.store.delete(L.job_status(m.name, uid, a.name))
        fault_point("job.after-request")
        self.log(f"shardedmodel/{m.name}: {a.purpose} shard {a.shard} slices {a.from_slice}..{m.spec.slices - 1} "
                 f"at revision {a.revision} (job {a.name})")
        return key

    def publish(self, m: ShardedModel, manifest: VersionManifest, obs: ModelObservation) -> None:
        """Write the version, then swap current.json: the one atomic step that publishes."""
        L, uid = self.layout, _uid(m)
        old_keys = obs.published.keys() if obs.published else set()
        new_refs = [r for chain in manifest.chains for r in chain if r.key not in old_keys]
        # every job whose output is in this version: a follow-up job builds on the checkpoints of the
        # job it followed (a forget that landed mid-job), so matching whole chains would drop that one
        new_keys = {r.key for r in new_refs}
        used = [j for j in obs.jobs
                if j.state == "succeeded" and any(r.key in new_keys for r in j.chain[j.from_slice:])]
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
        fault_point("publish.after-manifest")
        self.store.put_json(L.current(m.name, uid), {"version": manifest.version})
        fault_point("publish.after-swap")
        self.log(f"shardedmodel/{m.name}: published version {manifest.version} "
                 f"(dataset revision {manifest.revision}, {len(new_refs)} new checkpoint(s))")

    def purge(self, m: ShardedModel, revision: int, obs: ModelObservation) -> int:
        """Delete whatever still holds samples forgotten up to `revision`; write the purge record."""
        L, uid = self.layout, _uid(m)
        v = self.view(m.spec.datasetRef, revision)
        a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
        keys = [k for k in self.store.list(L.model(m.name, uid) + "/") if "/shard-" in k]
        metas = [k for k in keys if k.endswith("/meta.json")]
        stored = [CheckpointRef.from_dict(self.store.get_json(k)) for k in metas]
        vdocs = {int(k.rsplit("/", 1)[1][:-5]): self.store.get_json(k)
                 for k in self.store.list(L.versions(m.name, uid)) if k.endswith(".json")}
        # A trainer killed between a checkpoint and its meta.json leaves an orphan no version can
        # name. Without lineage it cannot be judged, so one older than this revision goes, unless
        # a job on its shard is running (it may be the one about to write the meta).
        busy = {j.shard for j in obs.jobs if j.state == "running"}
        described = {k[: -len("meta.json")] + "checkpoint" for k in metas}
        described |= {r["key"] for d in vdocs.values() for chain in d["shards"] for r in chain}
        for key in sorted(k for k in keys if k.endswith("/checkpoint") and k not in described):
            _, shard, _, rev, _ = key.rsplit("/", 4)  # .../shard-K/slice-R/rNNNNNN/checkpoint
            if int(rev[1:]) < revision and int(shard[len("shard-"):]) not in busy:
                self.store.delete(key)
        pub = obs.published.version if obs.published else None
        plan = plan_purge(stored, [VersionManifest.from_dict(d) for d in vdocs.values()], pub, a,
                          v.state.tombstoned_at)
        # The record before any delete: a rerun after a crash no longer sees what was deleted,
        # so it keeps what the earlier run planned and the certificate still names all of it.
        record_key = L.purge_record(m.name, uid, revision)
        try:
            earlier = self.store.get_json(record_key)
        except NotFound:
            earlier = {}
        held = _merge_held(earlier.get("purgedCheckpoints", {}),
                           {k: v for k, v in plan.held.items() if not k.startswith("version:")})
        held_versions = _merge_held(earlier.get("purgedVersions", {}),
                                    {k.split(":")[1]: v for k, v in plan.held.items() if k.startswith("version:")})
        self.store.put_json(record_key, {"revision": revision, "state": "purging", "purgedCheckpoints": held,
                                         "purgedVersions": held_versions})
        # Versions first (nothing may point at a missing checkpoint), then checkpoints.
        for n in plan.versions:
            self.store.delete(L.version(m.name, uid, n))
        for i, ref in enumerate(plan.checkpoints):
            if i == len(plan.checkpoints) // 2:
                fault_point("purge.mid-delete")
            self.store.delete(ref.key)
            self.store.delete(L.checkpoint_meta(ref.key))
        in_use = obs.published.keys() if obs.published else set()
        for key in sorted(obs.corrupt - in_use):  # rebuilt and no longer served: drop the bad bytes
            self.store.delete(key)
            self.store.delete(L.checkpoint_meta(key))
        # Job records are history once published: finished ones, and those of jobs that died
        # unseen (a record no running job owns); they name checkpoints the purge may remove.
        running = {j.name for j in obs.jobs if j.state == "running"}
        jobs_prefix = f"{L.model(m.name, uid)}/jobs/"
        for name in sorted({k[len(jobs_prefix):].split("/")[0] for k in self.store.list(jobs_prefix)} - running):
            self.store.delete_prefix(f"{jobs_prefix}{name}/")
        self.redact_experiments(v)
        fault_point("purge.after-delete")
        pubdoc = vdocs.get(pub, {}) if pub else {}
        self.store.put_json(record_key, {
            "revision": revision,
            "state": "done",
            "publishedVersion": pub,
            "purgedCheckpoints": held,
            "purgedVersions": held_versions,
            "newCheckpoints": pubdoc.get("newCheckpoints", []),
            "retrainedShards": [{"shard": j["shard"], "fromSlice": j["fromSlice"]} for j in pubdoc.get("jobs", [])],
            "retrainSeconds": sum(j.get("computeSeconds") or 0 for j in pubdoc.get("jobs", [])),
            "at": iso(now()),
        })
        if not plan.empty:
            self.log(f"shardedmodel/{m.name}: purged {len(plan.checkpoints)} checkpoint(s) and "
                     f"{len(plan.versions)} version(s) that held forgotten samples")
        return revision

    # -- experiments -----------------------------------------------------------------------
    def redact_experiments(self, v: DatasetView) -> int:
        """Remove the rows of samples tombstoned in `v` from every Experiment run on its Dataset.

        Predictions before the report: a rerun after a crash finds each still to do on its own.
        Returns the number of rows removed."""
        from shardwise.diagnosis.predictions import Predictions
        from shardwise.diagnosis.redact import redact_predictions, redact_report

        gone = set(v.table.ids[v.state.tombstoned_at > 0].tolist())
        if not gone:
            return 0
        removed = 0
        for key in sorted(k for k in self.store.list(self.layout.experiments()) if k.endswith("/report.json")):
            report = self.store.get_json(key)
            if report.get("dataset") != v.name:
                continue
            pkey = report.get("predictionsKey") or key[: -len("report.json")] + "predictions.npz"
            try:
                preds, n = redact_predictions(Predictions.from_npz(self.store.get_verified(pkey)), gone)
            except NotFound:
                n = 0
            if n:
                self.store.put_verified(pkey, preds.to_npz())
            report, m = redact_report(report, gone)
            if m:
                self.store.put_json(key, report)
            if n or m:
                self.log(f"experiment/{key.rsplit('/', 2)[1]}: removed {n} prediction(s) and {m} report row(s) "
                         "of forgotten or dropped samples")
            removed += n + m
        return removed

    def experiment_inputs(self, exp: Experiment, models: list[ShardedModel]) -> ExperimentObservation:
        """What the brain decides an Experiment from: its model, the stored versions and reports."""
        model = next((m for m in models if m.name == exp.spec.model_name(exp.name)), None)
        if model is None:
            return ExperimentObservation()
        pub = self.published(model)
        versions = frozenset(int(k.rsplit("/", 1)[1][:-5]) for k in
                             self.store.list(self.layout.versions(model.name, _uid(model))) if k.endswith(".json"))
        ds = model.spec.datasetRef
        return ExperimentObservation(ds, model.metadata.labels.get(EXPERIMENT_LABEL),
                                     pub.version if pub else None, versions, self._report(exp.name),
                                     self._report(exp.spec.baselineRef) if exp.spec.baselineRef else None,
                                     self.datasets.current_revision(ds) if self.datasets.exists(ds) else None,
                                     _uid(model))

    def _report(self, experiment: str) -> dict | None:
        try:
            return self.store.get_json(self.layout.experiment_report(experiment))
        except NotFound:
            return None

    def write_experiment_request(self, exp: Experiment, model: ShardedModel, version: int) -> str:
        key = self.layout.experiment_request(exp.name)
        self.store.put_json(key, {"namespace": self.namespace, "model": model.name, "uid": _uid(model),
                                  "version": version, "spec": model.spec.model_dump(mode="json"),
                                  "split": exp.spec.split, "output": self.layout.experiment_report(exp.name),
                                  "datasetRevision": exp.spec.datasetRevision,
                                  "experiment": exp.name, "predictions": self.layout.experiment_predictions(exp.name),
                                  "baseline": exp.spec.baselineRef and {
                                      "experiment": exp.spec.baselineRef,
                                      "report": self.layout.experiment_report(exp.spec.baselineRef),
                                      "predictions": self.layout.experiment_predictions(exp.spec.baselineRef)}})
        self.log(f"experiment/{exp.name}: testing {model.name} version {version} on the {exp.spec.split} split")
        return key

    def evaluation(self, m: ShardedModel, version: int) -> float | None:
        try:
            return float(self.store.get_json(self.layout.evaluation(m.name, _uid(m), version))["accuracy"])
        except NotFound:
            return None


def _merge_held(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, list[int]]:
    """Two purge records' "object -> tombstone revisions it held", as one."""
    return {k: sorted(set(a.get(k, [])) | set(b.get(k, []))) for k in sorted(a.keys() | b.keys())}


def _plus_days(ts: str, days: int) -> str:
    return (datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ") + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forget_status(fr: ForgetRequest, phase: str, ctype: str, cstatus, reason: str, msg: str) -> ForgetRequestStatus:
    st = (fr.status or ForgetRequestStatus()).model_copy(deep=True)
    st.phase = phase
    st.observedGeneration = fr.metadata.generation
    st.message = msg
    st.set_condition(ctype, cstatus, reason, msg)
    return st
