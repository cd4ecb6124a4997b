"""Models: observe them, their job records and requests, publish, purge, evaluate; the retained
checkpoints of deleted models."""

from __future__ import annotations

from shardwise.api import Dataset, ShardedModel
from shardwise.api.common import iso, now
from shardwise.api.jobs import EvaluationRequest, EvaluationResult, JobStatus, TrainingRequest
from shardwise.api.model import ShardedModelSpec, ShardedModelStatus
from shardwise.brain.lineage import CheckpointRef, slice_fingerprints
from shardwise.brain.model import ModelObservation, StartJob
from shardwise.brain.purge import orphans_to_delete, plan_purge
from shardwise.brain.versions import STARTED, JobLiveness, JobRecord, VersionManifest, jobs_in_version
from shardwise.control.base import _uid
from shardwise.control.datasets import DatasetControl
from shardwise.errors import CorruptObject, NotFound
from shardwise.faults import fault_point


class ModelControl(DatasetControl):
    """Models, their jobs, versions and purges."""

    # -- models -------------------------------------------------------------------------
    def observe_model(self, m: ShardedModel, liveness: JobLiveness,
                      dataset: Dataset | None | bool = True) -> ModelObservation:
        """dataset: the model's Dataset resource as the body sees it (None: it does not exist); True when
        the body does not say (the store alone decides)."""
        status = m.status or ShardedModelStatus()
        revision = fps = spread = None
        problem = _dataset_problem(m.spec.datasetRef, m.namespace, dataset)
        if problem is None and self.datasets.exists(m.spec.datasetRef):
            v = self.view(m.spec.datasetRef)
            revision = v.state.revision
            a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
            fps = slice_fingerprints(a, v.state, v.id_words)
            spread = a.spread(v.state.active)
        jobs = self.job_records(m, liveness)
        return ModelObservation(
            name=m.name, spec=m.spec, status=status, generation=m.metadata.generation,
            revision=revision, fingerprints=fps, published=self.published(m), jobs=jobs,
            purged_revision=status.purgedRevision or 0, evaluated_version=status.accuracyVersion,
            corrupt=self._still_corrupt({j.corrupt for j in jobs if j.state == "failed" and j.corrupt}),
            dataset_problem=problem, spread=spread,
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
        out = []
        for name in self._job_names(m.name, uid):
            try:
                req = TrainingRequest.model_validate(self.store.get_json(L.job_request(m.name, uid, name)))
            except NotFound:
                continue
            try:
                st = self.store.get_json(L.job_status(m.name, uid, name))
            except NotFound:
                st = {}
            state = liveness(name, st)  # may add a message to st (why a job failed)
            if state is None:
                continue
            js = JobStatus.model_validate(st)
            out.append(JobRecord(
                name=name, shard=req.shard, from_slice=req.fromSlice, revision=req.revision, state=state,
                chain=tuple(CheckpointRef.of(c) for c in js.chain), message=js.message, seconds=js.computeSeconds,
                corrupt=js.corrupt, slices_done=js.slicesDone, extra={"wallSeconds": js.wallSeconds},
            ))
        return out

    def _job_names(self, model: str, uid: str) -> list[str]:
        """The jobs with a request or status stored for this model."""
        return sorted({p.fields["job"] for k in self.store.list(self.layout.jobs(model, uid))
                       if (p := self.layout.parse(k)) and p.kind in ("job-request", "job-status")})

    def _version_numbers(self, model: str, uid: str) -> list[int]:
        return sorted(p.int("version") for k in self.store.list(self.layout.versions(model, uid))
                      if (p := self.layout.parse(k)) and p.kind == "version")

    def write_job_request(self, m: ShardedModel, a: StartJob) -> str:
        """The trainer's whole input, in the store; the Job or process only names it."""
        L, uid = self.layout, _uid(m)
        request = TrainingRequest(
            job=a.name, namespace=self.namespace, model=m.name, uid=uid, spec=m.spec, dataset=m.spec.datasetRef,
            shard=a.shard, fromSlice=a.from_slice, revision=a.revision, purpose=a.purpose,
            parent=a.parent.checkpoint() if a.parent else None, keep=[r.checkpoint() for r in a.keep])
        key = L.job_request(m.name, uid, a.name)
        self.record_trained(m)
        self.store.put_json(key, request.model_dump(mode="json"))
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
        used = jobs_in_version(obs.jobs, {r.key for r in new_refs})
        doc = manifest.to_dict() | {
            "created": iso(now()),
            "model": m.name,
            "aggregation": m.spec.aggregation,
            "previousVersion": obs.published.version if obs.published else None,
            "newCheckpoints": [{"key": r.key, "sha256": r.sha256, "shard": r.shard, "slice": r.slice}
                               for r in new_refs],
            "jobs": [{"name": j.name, "shard": j.shard, "fromSlice": j.from_slice, "revision": j.revision,
                      "computeSeconds": j.seconds, "wallSeconds": j.extra.get("wallSeconds")} for j in used],
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
        busy = {j.shard for j in obs.jobs if j.state in STARTED}  # see orphans_to_delete
        pub = obs.published.version if obs.published else None
        pubdoc = self._purge_model(m.name, uid, m.spec, revision, pub, busy)
        in_use = obs.published.keys() if obs.published else set()
        for key in sorted(obs.corrupt - in_use):  # rebuilt and no longer served: drop the bad bytes
            self.store.delete(key)
            self.store.delete(L.checkpoint_meta(key))
        # Job records are history once published: finished ones, and those of jobs that died
        # unseen (a record no running job owns); they name checkpoints the purge may remove.
        running = {j.name for j in obs.jobs if j.state in STARTED}
        for name in sorted(set(self._job_names(m.name, uid)) - running):
            self.store.delete_prefix(L.job(m.name, uid, name))
        self.redact_experiments(m.spec.datasetRef)
        fault_point("purge.after-delete")
        self._finish_purge_record(m.name, uid, revision, pub, pubdoc)
        return revision

    def _purge_model(self, model: str, uid: str, spec: ShardedModelSpec, revision: int, published: int | None,
                     busy: set[int]) -> dict:
        """The purge of one model's stored objects at `revision` (live or retained). Returns the published
        version's document (what the purge record reports as the retrain)."""
        L = self.layout
        v = self.view(spec.datasetRef, revision)
        gone = v.gone(spec.shards, spec.slices, spec.training.seed, spec.groupBy == "owner")
        kinds = {k: p.kind for k in self.store.list(L.model_objects(model, uid)) if (p := L.parse(k))}
        metas = [k for k, kind in kinds.items() if kind == "checkpoint-meta"]
        stored = [CheckpointRef.from_dict(self.store.get_json(k)) for k in metas]
        vdocs = {n: self.store.get_json(L.version(model, uid, n)) for n in self._version_numbers(model, uid)}
        described = {L.checkpoint_of_meta(k) for k in metas}
        described |= {r["key"] for d in vdocs.values() for chain in d["shards"] for r in chain}
        undescribed = [(k, p.int("shard"), p.int("revision")) for k, kind in kinds.items()
                       if kind == "checkpoint" and k not in described and (p := L.parse(k)) is not None]
        for key in orphans_to_delete(undescribed, revision, busy):
            self.store.delete(key)
        plan = plan_purge(stored, [VersionManifest.from_dict(d) for d in vdocs.values()], published, gone)
        # The record before any delete: a rerun after a crash no longer sees what was deleted,
        # so it keeps what the earlier run planned and the certificate still names all of it.
        record_key = L.purge_record(model, uid, revision)
        try:
            earlier = self.store.get_json(record_key)
        except NotFound:
            earlier = {}
        cells = {r.key: [r.shard, r.slice] for r in plan.checkpoints}
        record = {
            "revision": revision, "state": "purging",
            "purgedCheckpoints": _merge_held(earlier.get("purgedCheckpoints", {}),
                                             {k: h for k, h in plan.held.items() if not k.startswith("version:")}),
            "purgedVersions": _merge_held(earlier.get("purgedVersions", {}),
                                          {k.split(":")[1]: h for k, h in plan.held.items()
                                           if k.startswith("version:")}),
            "purgedCells": {**earlier.get("purgedCells", {}), **cells},
            "versionHeld": {**earlier.get("versionHeld", {}), **{str(n): ks for n, ks in plan.version_held.items()}},
        }
        self.store.put_json(record_key, record)
        # Versions first (nothing may point at a missing checkpoint), then checkpoints.
        for n in plan.versions:
            self.store.delete(L.version(model, uid, n))
        for i, ref in enumerate(plan.checkpoints):
            if i == len(plan.checkpoints) // 2:
                fault_point("purge.mid-delete")
            self.store.delete(ref.key)
            self.store.delete(L.checkpoint_meta(ref.key))
        if not plan.empty:
            self.log(f"shardedmodel/{model}: purged {len(plan.checkpoints)} checkpoint(s) and "
                     f"{len(plan.versions)} version(s) that held forgotten samples")
        return vdocs.get(published, {}) if published else {}

    def _finish_purge_record(self, model: str, uid: str, revision: int, published: int | None, pubdoc: dict) -> None:
        key = self.layout.purge_record(model, uid, revision)
        record = self.store.get_json(key)
        record.update({"state": "done", "publishedVersion": published, "at": iso(now()),
                       "newCheckpoints": pubdoc.get("newCheckpoints", []), "jobs": pubdoc.get("jobs", []),
                       "retrainedShards": [{"shard": j["shard"], "fromSlice": j["fromSlice"]}
                                           for j in pubdoc.get("jobs", [])],
                       "retrainSeconds": sum(j.get("computeSeconds") or 0 for j in pubdoc.get("jobs", []))})
        self.store.put_json(key, record)

    # -- models trained on a Dataset, live or deleted ------------------------------------------
    def record_trained(self, m: ShardedModel) -> None:
        """Note, beside the Dataset, that this model trains on it (kept when the model is deleted with its
        checkpoints retained, so that later forgets still find and purge them)."""
        key = self.layout.dataset_trained(m.spec.datasetRef, m.name, _uid(m))
        if not self.store.exists(key):
            self.store.put_json(key, {"model": m.name, "uid": _uid(m), "spec": m.spec.model_dump(mode="json"),
                                      "at": iso(now())})

    def trained_on(self, dataset: str) -> list[dict]:
        """Every model (live or deleted) recorded as trained on the Dataset."""
        prefix = self.layout.dataset_trained_prefix(dataset)
        return [self.store.get_json(k) for k in self.store.list(prefix)
                if (p := self.layout.parse(k)) and p.kind == "dataset-trained"]

    def forget_model(self, m: ShardedModel) -> None:
        """Its objects are gone (storagePolicy Delete): drop the record beside the Dataset."""
        self.store.delete(self.layout.dataset_trained(m.spec.datasetRef, m.name, _uid(m)))

    def purge_retained(self, rec: dict, revision: int) -> None:
        """Purge the retained checkpoints and versions of a deleted model that hold samples forgotten up to
        `revision`. Nothing serves from them, so the published version goes too when it holds any."""
        model, uid = rec["model"], rec["uid"]
        spec = ShardedModelSpec.model_validate(rec["spec"])
        L = self.layout
        try:
            done = self.store.get_json(L.purge_record(model, uid, revision)).get("state") == "done"
        except NotFound:
            done = False
        if done:
            return
        try:
            pub = int(self.store.get_json(L.current(model, uid))["version"])
        except NotFound:
            pub = None
        self._purge_model(model, uid, spec, revision, None, set())
        if pub is not None and not self.store.exists(L.version(model, uid, pub)):
            self.store.delete(L.current(model, uid))  # it pointed at a version that held the samples
            pub = None
        self.store.delete_prefix(L.jobs(model, uid))
        self._finish_purge_record(model, uid, revision, pub, {})  # no retrain: nothing trains a deleted model

    # -- evaluation ---------------------------------------------------------------------
    def write_evaluation_request(self, m: ShardedModel, version: int) -> str:
        key = self.layout.evaluation_request(m.name, _uid(m), version)
        self.store.put_json(key, EvaluationRequest(namespace=self.namespace, model=m.name, uid=_uid(m), version=version,
                                                   spec=m.spec).model_dump(mode="json"))
        return key

    def evaluation(self, m: ShardedModel, version: int) -> tuple[float | None] | None:
        """(held-out accuracy,) once the version was evaluated (None inside: no test sample to measure it
        on); None before."""
        try:
            doc = self.store.get_json(self.layout.evaluation(m.name, _uid(m), version))
        except NotFound:
            return None
        return (EvaluationResult.model_validate(doc).accuracy,)


def _dataset_problem(name: str, namespace: str, dataset: Dataset | None | bool) -> tuple[str, str] | None:
    """(reason, message) when a model cannot train because of its Dataset resource; None otherwise."""
    if dataset is True:
        return None
    if dataset is None or dataset is False:
        return "DatasetNotFound", f"spec.datasetRef: Dataset {name!r} does not exist in namespace {namespace!r}"
    if dataset.status is not None and dataset.status.phase == "Failed":
        return "DatasetFailed", f"Dataset {name!r} failed: {dataset.status.message}"
    return None


def _merge_held(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, list[int]]:
    """Two purge records' "object -> tombstone revisions it held", as one."""
    return {k: sorted(set(a.get(k, [])) | set(b.get(k, []))) for k in sorted(a.keys() | b.keys())}
