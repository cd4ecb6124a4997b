"""Carry out the brain's decisions on the store, for either body.

Both the local body (processes) and the kube body (Jobs, API server) observe
and act on the store the same way; only how they list resources, run jobs and
persist status differs. Nothing here decides: the decisions are in brain/.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Literal

import numpy as np

from shardwise.api import Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import iso, now
from shardwise.api.correction import Correction, CorrectionStatus
from shardwise.api.dataset import DatasetStatus
from shardwise.api.experiment import EXPERIMENT_LABEL
from shardwise.api.forget import ForgetRequestStatus
from shardwise.api.jobs import Baseline, Checkpoint, EvaluationRequest, JobStatus, TrainingRequest
from shardwise.api.model import ShardedModelSpec, ShardedModelStatus
from shardwise.brain import forget as fbrain
from shardwise.brain.assignment import assign
from shardwise.brain.experiment import ExperimentObservation
from shardwise.brain.lineage import CheckpointRef, slice_fingerprints
from shardwise.brain.model import ModelObservation, StartJob
from shardwise.brain.purge import plan_purge
from shardwise.brain.versions import STARTED, JobRecord, VersionManifest
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.errors import CorruptObject, InvalidInput, NotFound, ShardwiseError
from shardwise.faults import fault_point
from shardwise.store.base import Store
from shardwise.store.layout import Layout

Log = Callable[[str], None]
VIEW_CACHE = 4  # dataset revisions kept loaded (a pass needs the current one and the one it purges)
# How a body sees a job: "waiting" (held for admission by a queue), "running", "succeeded", "failed", or
# None when it is not running anywhere (never started, or interrupted by a restart: start it again).
JobLiveness = Callable[[str, dict], Literal["waiting", "running", "succeeded", "failed"] | None]


def _uid(m: ShardedModel) -> str:
    return m.metadata.uid or "nouid"


def _active_positions(v: DatasetView, dataset: str, ids: list[str], gone: str, field: str) -> dict[str, int]:
    """Row positions of the Dataset's samples, after checking that every one of `ids` is a sample
    that is still active (the message `gone` names the inactive ones, `field` where the ids came
    from). Nothing is written before."""
    pos = {s: i for i, s in enumerate(v.table.ids.tolist())}
    unknown = [i for i in ids if i not in pos]
    if unknown:
        raise InvalidInput(f"{field}: {len(unknown)} id(s) not in Dataset {dataset!r}: {', '.join(unknown[:10])}")
    inactive = [i for i in ids if not v.state.active[pos[i]]]
    if inactive:
        raise InvalidInput(f"{field}: {gone}: {', '.join(inactive[:10])}")
    return pos


# Where relabel and drop name their inputs in errors: the CLI's options, or a Correction's fields.
CLI_FIELDS = {"id": "--id", "label": "--label"}
CORRECTION_FIELDS = {"relabel": {"id": "spec.relabel", "label": "spec.relabel"}, "drop": {"id": "spec.drop"}}


class StoreControl:
    def __init__(self, store: Store, namespace: str, log: Log = lambda m: None):
        self.store, self.namespace, self.log = store, namespace, log
        self.layout = Layout(namespace)
        self.datasets = DatasetStore(store, self.layout)
        self._views: dict[tuple[str, int, int], DatasetView] = {}

    # -- datasets -------------------------------------------------------------------
    def view(self, name: str, revision: int | None = None) -> DatasetView:
        """A revision of a Dataset (the current one by default), cached while the current one stays: a
        later revision may have forgotten rows that an older view still holds."""
        cur = self.datasets.current_revision(name)
        key = (name, cur if revision is None else revision, cur)
        view = self._views.pop(key, None) or self.datasets.view(name, key[1])
        self._views[key] = view  # most recent last
        while len(self._views) > VIEW_CACHE:  # each view holds a whole payload: keep a few
            del self._views[next(iter(self._views))]
        return view

    def reconcile_dataset(self, ds: Dataset, source_opener: Callable[[str], Store] | None = None) -> DatasetStatus:
        """Ingest on first sight (again after a failure: the source may be readable now, and again when a
        re-created Dataset names another source); the status of the current revision.

        source_opener: "s3://bucket" -> a Store with the credentials to read the source with (the
        tenant's, in a cluster); None reads with this process's environment."""
        from shardwise.data.sources import load_source

        st = (ds.status or DatasetStatus()).model_copy(deep=True)
        st.observedGeneration = ds.metadata.generation
        schema = self.datasets.schema(ds.name)
        stored = self.datasets.exists(ds.name)
        if not stored or (schema is not None and schema.source != ds.spec.model_dump(mode="json")):
            try:
                classes = ds.spec.classes or (schema.classes if schema is not None else None)
                table = load_source(ds.spec.source, classes=classes, store_opener=source_opener)
                what = "re-ingesting" if stored else "ingesting"
                self.log(f"dataset/{ds.name}: {what} {ds.spec.source.builtin or ds.spec.source.uri}")
                _, skipped = self.datasets.ingest(ds.name, ds.spec, table,
                                                  list(table.feature_names) if table.feature_names else None)
                st.skippedForgotten = skipped
                if skipped:
                    self.log(f"dataset/{ds.name}: left out {skipped} row(s) of the source that were forgotten before")
            except ShardwiseError as e:
                if st.phase != "Failed" or st.message != str(e):
                    self.log(f"dataset/{ds.name}: ingest failed: {e}")
                st.phase = "Failed"
                st.message = str(e)
                st.set_condition("Ready", "False", "IngestFailed", str(e))
                return st
        v = self.view(ds.name)
        st.phase = "Ready"
        st.message = ""
        st.revision = v.state.revision
        st.samples = len(v.table) + len(v.forgotten)
        st.activeSamples = int(v.state.active.sum())
        st.tombstoned = st.samples - st.activeSamples
        st.classes = len(v.table.class_names)
        st.set_condition("Ready", "True", "Ingested", f"revision {st.revision}")
        return st

    # -- forget requests ----------------------------------------------------------------
    def accept_forgets(self, dataset: str, requests: list[ForgetRequest]) -> dict[str, ForgetRequestStatus]:
        """Resolve pending requests of one dataset and forget them all in ONE new revision.

        A request whose every sample was forgotten before changes nothing: it is certified at once and
        writes no revision."""
        out: dict[str, ForgetRequestStatus] = {}
        if not self.datasets.exists(dataset):
            for fr in requests:
                out[fr.name] = _forget_status(fr, "Pending", "Ready", "False", "DatasetNotReady",
                                              f"waiting for Dataset {dataset!r}")
            return out
        v = self.view(dataset)
        key = self.datasets.key(dataset)
        done = self._revisions_of(dataset, {fr.name for fr in requests})
        accepted: list[tuple[ForgetRequest, np.ndarray, int, str]] = []
        for fr in requests:
            if fr.name in done:  # forgotten by a run that died before it could mark the request accepted
                rev, entry = done[fr.name]
                out[fr.name] = self._accepted(fr, rev, entry["samples"], entry["alreadyForgotten"])
                continue
            res = fbrain.resolve(fr.spec, v.table.ids, v.table.owners, v.forgotten, key.tag)
            why = fbrain.rejection(fr.spec, res)
            if why:
                out[fr.name] = _forget_status(fr, "Failed", "Failed", "True", "UnknownSamples", why)
                self.log(f"forgetrequest/{fr.name}: rejected: {why}")
            elif res.indices.size == 0:
                out[fr.name] = self._nothing_to_do(fr, v.state.revision, len(res.already_forgotten))
            else:
                digest = key.digest(v.table.ids[res.indices].tolist())
                accepted.append((fr, res.indices, len(res.already_forgotten), digest))
        if not accepted:
            return out
        rows = np.unique(np.concatenate([a[1] for a in accepted]))
        base = len(v.forgotten)  # the new tombstones are appended in row order
        entries = [{"name": fr.name, "samples": int(ix.size), "alreadyForgotten": already, "idsHmac": digest,
                    "tombstones": (base + np.searchsorted(rows, ix)).tolist()}
                   for fr, ix, already, digest in accepted]
        new, _ = self.datasets.forget(dataset, rows, {"kind": "forget", "samples": int(rows.size),
                                                      "requests": entries})
        self.log(f"dataset/{dataset}: revision {new.revision} forgets "
                 + ", ".join(f"{e['samples']} sample(s) for {e['name']}" for e in entries)
                 + "; their payload rows, labels and relabel records are removed")
        self.redact_experiments(dataset)
        for fr, ix, already, _ in accepted:
            out[fr.name] = self._accepted(fr, new.revision, int(ix.size), already)
        return out

    def _accepted(self, fr: ForgetRequest, revision: int, samples: int, already: int) -> ForgetRequestStatus:
        st = (fr.status or ForgetRequestStatus()).model_copy(deep=True)
        st.observedGeneration = fr.metadata.generation
        st.datasetRevision = revision
        st.samples = samples
        st.alreadyForgotten = already
        st.acceptedAt = iso(now())
        st.deadline = _plus_days(fr.metadata.creationTimestamp or st.acceptedAt, fr.spec.deadlineDays)
        st.phase = "Retraining"
        st.set_condition("Progressing", "True", "Forgotten", f"dataset revision {revision}")
        return st

    def _nothing_to_do(self, fr: ForgetRequest, revision: int, already: int) -> ForgetRequestStatus:
        """Every sample named was forgotten by an earlier request: certify that, and nothing more."""
        st = self._accepted(fr, revision, 0, already)
        cert = self._ledgered(fr.name, None)
        if cert is None:
            cert = fbrain.certificate(fr.name, fr.spec.datasetRef, None, 0, already, "", [], st.acceptedAt or "",
                                      iso(now()))
            cert["ledgerEntry"] = self._append_ledger(fr.name, cert)
        return self._complete(fr, st, cert, f"nothing to forget: {already} sample(s) were forgotten before")

    def _revisions_of(self, dataset: str, names: set[str]) -> dict[str, tuple[int, dict]]:
        """Requests among `names` that a revision already forgot -> (that revision, its entry).

        Read only when requests are pending (rare), newest first: a crash between writing the
        revision and marking the requests accepted must not forget them again."""
        found: dict[str, tuple[int, dict]] = {}
        for rev in range(self.datasets.current_revision(dataset), 1, -1):
            change = self.store.get_json(self.layout.dataset_revision(dataset, rev)).get("change", {})
            if change.get("kind") == "forget":
                for entry in change.get("requests", []):
                    if entry["name"] in names and entry["name"] not in found:
                        found[entry["name"]] = (rev, entry)
            if len(found) == len(names):
                break
        return found

    def complete_forget(self, fr: ForgetRequest, models: list[ShardedModel]) -> ForgetRequestStatus | None:
        """The new status once every model on the dataset has published and purged, and the retained
        checkpoints of deleted models are purged too; None if unchanged."""
        st = fr.status
        if st is None or st.phase in ("Complete", "Failed") or st.datasetRevision is None:
            return None
        T = st.datasetRevision
        waiting = [m.name for m in models
                   if not m.status or (m.status.purgedRevision or 0) < T or (m.status.datasetRevision or 0) < T]
        if waiting:
            phase = ("Queued" if any(m.status is None or m.status.publishedVersion is None for m in models)
                     else "WaitingForAdmission" if any(m.name in waiting and m.status.phase == "WaitingForAdmission"
                                                       for m in models)
                     else "Retraining")
            failed = [f"{m.name} failed: {m.status.condition('Failed').message}" for m in models
                      if m.name in waiting and m.status and m.status.phase == "Failed" and m.status.condition("Failed")]
            msg = f"waiting for {', '.join(waiting)} to retrain, publish and purge" + "".join(
                f"; {f} (fix it, or delete the model: its checkpoints are then purged)" for f in failed)
            new = _forget_status(fr, phase, "Progressing", "True", "Retraining", msg)
            if new.deadline:
                new.timeLeft, risk = fbrain.deadline_state(new.deadline, now(), fr.spec.deadlineDays)
                if risk:
                    new.set_condition("DeadlineAtRisk", "True", risk, f"{new.timeLeft} left to {new.deadline}")
            return None if new.same_as(st) else new
        dataset = fr.spec.datasetRef
        live = {(m.name, _uid(m)) for m in models}
        retained = [r for r in self.trained_on(dataset) if (r["model"], r["uid"]) not in live]
        for r in retained:  # deleted models whose checkpoints were kept hold the samples as much
            self.purge_retained(r, T)
        cert = self._ledgered(fr.name, T)  # a run that died right after appending it
        if cert is None:
            entry = self._request_entry(dataset, T, fr.name)
            tomb = np.asarray(entry.get("tombstones", []), dtype=np.int64)
            v = self.view(dataset)
            purges = []
            for name, uid, spec, deleted in ([(m.name, _uid(m), m.spec, False) for m in models]
                                             + [(r["model"], r["uid"], ShardedModelSpec.model_validate(r["spec"]),
                                                 True) for r in retained]):
                rec = self._purge_record_for(name, uid, T)
                purges.append(fbrain.ModelPurge(name, uid, rec.get("revision", T), rec.get("publishedVersion") or 0,
                                                rec, _cells(v, tomb, spec), deleted))
            cert = fbrain.certificate(fr.name, dataset, T, st.samples or 0, st.alreadyForgotten or 0,
                                      entry.get("idsHmac", ""), purges, st.acceptedAt or "", iso(now()))
            cert["ledgerEntry"] = self._append_ledger(fr.name, cert)
        fault_point("forget.after-ledger")
        n = len(models) + len(retained)
        return self._complete(fr, st, cert, f"forgotten from {n} model(s)"
                              + (f" ({len(retained)} deleted, checkpoints retained)" if retained else ""))

    def _complete(self, fr: ForgetRequest, st: ForgetRequestStatus, cert: dict, message: str) -> ForgetRequestStatus:
        new = st.model_copy(deep=True)
        new.certificate = cert
        new.completedAt = cert["completedAt"]
        new.phase = "Complete"
        new.timeLeft = None
        new.conditions = [c for c in new.conditions if c.type != "DeadlineAtRisk"]
        new.message = message
        new.set_condition("Progressing", "False", "Complete", "")
        new.set_condition("Ready", "True", "Complete", new.message)
        self.log(f"forgetrequest/{fr.name}: Complete ({new.samples} sample(s); {message})")
        return new

    def _request_entry(self, dataset: str, revision: int, request: str) -> dict:
        change = self.store.get_json(self.layout.dataset_revision(dataset, revision)).get("change", {})
        return next((e for e in change.get("requests", []) if e.get("name") == request), {})

    def _purge_record_for(self, model: str, uid: str, revision: int) -> dict:
        """The first purge record of a model at `revision` or later (the one that covered it)."""
        prefix = f"{self.layout.model(model, uid)}/purges/"
        recs = [self.store.get_json(k) for k in sorted(self.store.list(prefix)) if k.endswith(".json")]
        return next((r for r in recs if r["revision"] >= revision), {})

    def _ledgered(self, request: str, revision: int | None) -> dict | None:
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

    def relabel(self, dataset: str, labels: dict[str, str], by: str, *, fields: dict[str, str] = CLI_FIELDS,
                correction: dict[str, str] | None = None) -> int:
        """A label correction as a new Dataset revision recording who and when (and the Correction object it
        carries out, if any). Returns the revision.

        Ids and label names are checked first; nothing is written unless all are valid.
        """
        v, pos, classes = self.check_relabel(dataset, labels, fields)
        idx = np.array([pos[i] for i in labels], dtype=np.int64)
        new = self.datasets.cumulative(dataset).relabel(idx, np.array([classes[lab] for lab in labels.values()],
                                                                       dtype=np.int64))
        self.datasets.write_state(dataset, new, {
            "kind": "relabel", "by": by, "at": iso(now()), **({"correction": correction} if correction else {}),
            "labels": [{"id": i, "from": v.table.class_names[int(v.state.labels[pos[i]])], "to": lab}
                       for i, lab in labels.items()]})
        self.log(f"dataset/{dataset}: revision {new.revision} relabels {len(labels)} sample(s) (by {by})")
        return new.revision

    def check_relabel(self, dataset: str, labels: dict[str, str], fields: dict[str, str] = CLI_FIELDS
                      ) -> tuple[DatasetView, dict[str, int], dict[str, int]]:
        """Refuse unknown or inactive ids and labels that are not classes, writing nothing; the current view,
        the rows by id and the classes by name."""
        v = self.view(dataset)
        pos = _active_positions(v, dataset, list(labels), gone="dropped or forgotten samples cannot be relabelled",
                                field=fields["id"])
        classes = {c: i for i, c in enumerate(v.table.class_names)}
        bad = sorted({lab for lab in labels.values() if lab not in classes})
        if bad:
            raise InvalidInput(f"{fields['label']}: {', '.join(map(repr, bad))} is not a class of Dataset {dataset!r} "
                               f"(classes: {', '.join(v.table.class_names)})")
        return v, pos, classes

    def drop(self, dataset: str, ids: list[str], by: str, *, fields: dict[str, str] = CLI_FIELDS,
             correction: dict[str, str] | None = None) -> int:
        """Take samples out of training (a revision recording who and when). Returns the revision.

        A curation step, not a GDPR forget: no ForgetRequest or certificate, and the rows stay stored
        (a ForgetRequest removes them). Ids are checked first; nothing is written unless all are valid.
        """
        v = self.view(dataset)
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise InvalidInput(f"{fields['id']}: no sample ids to drop")
        pos = _active_positions(v, dataset, ids, gone="already dropped or forgotten", field=fields["id"])
        new = self.datasets.cumulative(dataset).drop(np.array([pos[i] for i in ids], dtype=np.int64))
        self.datasets.write_state(dataset, new, {"kind": "drop", "by": by, "at": iso(now()), "ids": ids,
                                                 **({"correction": correction} if correction else {})})
        self.log(f"dataset/{dataset}: revision {new.revision} drops {len(ids)} sample(s) (by {by})")
        return new.revision

    def apply_correction(self, c: Correction) -> CorrectionStatus | None:
        """Carry out a Correction object as one Dataset revision recording its author; the new status, or
        None once it is Applied or Failed (its spec is immutable, so it is carried out once).

        A crash between writing the revision and writing the status must not apply it twice: the
        revisions written since the object was created are searched for its uid first."""
        if c.status is not None and c.status.phase in ("Applied", "Failed"):
            return None
        st = CorrectionStatus(observedGeneration=c.metadata.generation)
        ds = c.spec.datasetRef
        if not self.datasets.exists(ds):
            st.message = f"waiting for Dataset {ds!r} to be ingested"
            st.set_condition("Ready", "False", "DatasetNotReady", st.message)
            return st
        what = "relabel" if c.spec.relabel else "drop"
        ref = {"name": c.name, "uid": c.metadata.uid or ""}
        rev = self._correction_revision(ds, ref, c.metadata.creationTimestamp)
        if rev is None:
            try:
                fields = CORRECTION_FIELDS[what]
                rev = (self.relabel(ds, c.spec.labels(), c.spec.author, fields=fields, correction=ref) if c.spec.relabel
                       else self.drop(ds, c.spec.drop, c.spec.author, fields=fields, correction=ref))
            except InvalidInput as e:
                st.phase, st.message = "Failed", str(e)
                st.set_condition("Ready", "False", "Refused", st.message)
                self.log(f"correction/{c.name}: refused: {e}")
                return st
        st.phase, st.datasetRevision, st.appliedAt = "Applied", rev, iso(now())
        st.samples = len(c.spec.relabel or c.spec.drop)
        st.message = f"{what} of {st.samples} sample(s) by {c.spec.author}: Dataset {ds} revision {rev}"
        st.set_condition("Ready", "True", "Applied", st.message)
        return st

    def _correction_revision(self, dataset: str, ref: dict[str, str], created: str | None) -> int | None:
        """The revision that carried out this Correction object already, if any: only revisions written
        since it was created (less 10 minutes of clock skew) can hold it."""
        since = iso(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                    - timedelta(minutes=10)) if created else ""
        for rev in range(self.datasets.current_revision(dataset), 1, -1):
            doc = self.store.get_json(self.layout.dataset_revision(dataset, rev))
            if doc.get("change", {}).get("correction") == ref:
                return rev
            if doc.get("createdAt", "") < since:
                return None
        return None

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
        prefix = f"{L.model(m.name, uid)}/jobs/"
        out = []
        for name in sorted({k[len(prefix):].split("/")[0] for k in self.store.list(prefix)}):
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
                chain=tuple(c.ref() for c in js.chain), message=js.message, seconds=js.computeSeconds,
                corrupt=js.corrupt, slices_done=js.slicesDone, extra={"wallSeconds": js.wallSeconds},
            ))
        return out

    def write_job_request(self, m: ShardedModel, a: StartJob) -> str:
        """The trainer's whole input, in the store; the Job or process only names it."""
        L, uid = self.layout, _uid(m)
        request = TrainingRequest(
            job=a.name, namespace=self.namespace, model=m.name, uid=uid, spec=m.spec, dataset=m.spec.datasetRef,
            shard=a.shard, fromSlice=a.from_slice, revision=a.revision, purpose=a.purpose,
            parent=Checkpoint.of(a.parent) if a.parent else None, keep=[Checkpoint.of(r) for r in a.keep])
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
        # A trainer killed between a checkpoint and its meta.json leaves an orphan no version can
        # name. Without lineage it cannot be judged, so one older than this revision goes, unless
        # a job on its shard is running (it may be the one about to write the meta).
        busy = {j.shard for j in obs.jobs if j.state in STARTED}
        pub = obs.published.version if obs.published else None
        pubdoc = self._purge_model(m.name, uid, m.spec, revision, pub, busy)
        in_use = obs.published.keys() if obs.published else set()
        for key in sorted(obs.corrupt - in_use):  # rebuilt and no longer served: drop the bad bytes
            self.store.delete(key)
            self.store.delete(L.checkpoint_meta(key))
        # Job records are history once published: finished ones, and those of jobs that died
        # unseen (a record no running job owns); they name checkpoints the purge may remove.
        running = {j.name for j in obs.jobs if j.state in STARTED}
        jobs_prefix = f"{L.model(m.name, uid)}/jobs/"
        for name in sorted({k[len(jobs_prefix):].split("/")[0] for k in self.store.list(jobs_prefix)} - running):
            self.store.delete_prefix(f"{jobs_prefix}{name}/")
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
        keys = [k for k in self.store.list(L.model(model, uid) + "/") if "/shard-" in k]
        metas = [k for k in keys if k.endswith("/meta.json")]
        stored = [CheckpointRef.from_dict(self.store.get_json(k)) for k in metas]
        vdocs = {int(k.rsplit("/", 1)[1][:-5]): self.store.get_json(k)
                 for k in self.store.list(L.versions(model, uid)) if k.endswith(".json")}
        described = {k[: -len("meta.json")] + "checkpoint" for k in metas}
        described |= {r["key"] for d in vdocs.values() for chain in d["shards"] for r in chain}
        for key in sorted(k for k in keys if k.endswith("/checkpoint") and k not in described):
            _, shard, _, rev, _ = key.rsplit("/", 4)  # .../shard-K/slice-R/rNNNNNN/checkpoint
            if int(rev[1:]) < revision and int(shard[len("shard-"):]) not in busy:
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
        return [self.store.get_json(k) for k in self.store.list(prefix) if k.endswith(".json")]

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
        self.store.delete_prefix(f"{L.model(model, uid)}/jobs/")
        self._finish_purge_record(model, uid, revision, pub, {})  # no retrain: nothing trains a deleted model

    # -- experiments -----------------------------------------------------------------------
    def redact_experiments(self, dataset: str) -> int:
        """Remove the rows of samples no longer trained on (dropped or forgotten) from every Experiment run
        on the Dataset. Forgotten samples are recognised by their keyed tags (their ids are gone).

        Predictions before the report: a rerun after a crash finds each still to do on its own.
        Returns the number of rows removed."""
        from shardwise.diagnosis.predictions import Predictions
        from shardwise.diagnosis.redact import redact_predictions, redact_report, report_ids

        v = self.view(dataset)
        if not len(v.forgotten) and v.state.active.all():
            return 0
        gone_of = self.gone_ids(v)
        removed = 0
        for key in sorted(k for k in self.store.list(self.layout.experiments()) if k.endswith("/report.json")):
            report = self.store.get_json(key)
            if report.get("dataset") != dataset:
                continue
            pkey = report.get("predictionsKey") or key[: -len("report.json")] + "predictions.npz"
            try:
                preds = Predictions.from_npz(self.store.get_verified(pkey))
                preds, n = redact_predictions(preds, gone_of(preds.ids.astype(str).tolist()))
            except NotFound:
                n = 0
            if n:
                self.store.put_verified(pkey, preds.to_npz())
            report, m = redact_report(report, gone_of(sorted(report_ids(report))))
            if m:
                self.store.put_json(key, report)
            if n or m:
                self.log(f"experiment/{key.rsplit('/', 2)[1]}: removed {n} prediction(s) and {m} report row(s) "
                         "of forgotten or dropped samples")
            removed += n + m
        return removed

    def gone_ids(self, v: DatasetView) -> Callable[[list[str]], set[str]]:
        """ids -> those of samples dropped (by id) or forgotten (by keyed tag) in the Dataset of `v`."""
        dropped = set(v.table.ids[~v.state.active].tolist())
        key = self.datasets.key(v.name)
        tags = set(v.forgotten.id_tag.tolist())

        def gone(ids: list[str]) -> set[str]:
            return {i for i in ids if i in dropped or key.tag("id", i) in tags}
        return gone

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
        key, L = self.layout.experiment_request(exp.name), self.layout
        base = exp.spec.baselineRef
        request = EvaluationRequest(
            namespace=self.namespace, model=model.name, uid=_uid(model), version=version, spec=model.spec,
            split=exp.spec.split, output=L.experiment_report(exp.name), datasetRevision=exp.spec.datasetRevision,
            experiment=exp.name, predictions=L.experiment_predictions(exp.name),
            baseline=Baseline(experiment=base, report=L.experiment_report(base),
                              predictions=L.experiment_predictions(base)) if base else None)
        self.store.put_json(key, request.model_dump(mode="json"))
        self.log(f"experiment/{exp.name}: testing {model.name} version {version} on the {exp.spec.split} split")
        return key

    def write_evaluation_request(self, m: ShardedModel, version: int) -> str:
        key = self.layout.evaluation_request(m.name, _uid(m), version)
        self.store.put_json(key, EvaluationRequest(namespace=self.namespace, model=m.name, uid=_uid(m), version=version,
                                                   spec=m.spec).model_dump(mode="json"))
        return key

    def evaluation(self, m: ShardedModel, version: int) -> float | None:
        try:
            return float(self.store.get_json(self.layout.evaluation(m.name, _uid(m), version))["accuracy"])
        except NotFound:
            return None


def _cells(v: DatasetView, tombstones: np.ndarray, spec: ShardedModelSpec) -> frozenset[tuple[int, int]]:
    """The (shard, slice) cells of a model that held the given forgotten samples (test samples hold none)."""
    t = v.forgotten.take(tombstones)
    a = assign(t.group_word if spec.groupBy == "owner" else t.id_word, t.train, spec.shards, spec.slices,
               spec.training.seed)
    m = a.shard >= 0
    return frozenset(zip(a.shard[m].tolist(), a.slice[m].tolist()))


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


def _plus_days(ts: str, days: int) -> str:
    return (datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ") + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forget_status(fr: ForgetRequest, phase: str, ctype: str, cstatus, reason: str, msg: str) -> ForgetRequestStatus:
    st = (fr.status or ForgetRequestStatus()).model_copy(deep=True)
    st.phase = phase
    st.observedGeneration = fr.metadata.generation
    st.message = msg
    st.set_condition(ctype, cstatus, reason, msg)
    return st
