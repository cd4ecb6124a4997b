"""Datasets and curation: ingest, views, relabels, drops, Correction objects, and the redaction of
Experiment reports once samples are no longer trained on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from shardwise.api import Dataset
from shardwise.api.common import iso, now
from shardwise.api.correction import Correction, CorrectionStatus
from shardwise.api.dataset import DatasetStatus
from shardwise.control.base import VIEW_CACHE, ControlBase
from shardwise.datasets import DatasetView
from shardwise.errors import InvalidInput, NotFound, ShardwiseError
from shardwise.store.base import Store


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


class DatasetControl(ControlBase):
    """Datasets and curation."""

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
        since = iso(datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                    - timedelta(minutes=10)) if created else ""
        for rev in range(self.datasets.current_revision(dataset), 1, -1):
            doc = self.store.get_json(self.layout.dataset_revision(dataset, rev))
            if doc.get("change", {}).get("correction") == ref:
                return rev
            if doc.get("createdAt", "") < since:
                return None
        return None

    # -- experiment reports -----------------------------------------------------------
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
        reports = {p.fields["experiment"]: k for k in self.store.list(self.layout.experiments())
                   if (p := self.layout.parse(k)) is not None and p.kind == "experiment-report"}
        for experiment, key in sorted(reports.items(), key=lambda kv: kv[1]):
            report = self.store.get_json(key)
            if report.get("dataset") != dataset:
                continue
            pkey = report.get("predictionsKey") or self.layout.experiment_predictions(experiment)
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
                self.log(f"experiment/{experiment}: removed {n} prediction(s) "
                         f"and {m} report row(s) "
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
