"""The annotation page's JSON API, without HTTP: each method takes parsed parameters and
returns a JSON-ready dict (or PNG bytes), or raises ApiError with a status and a message
naming the field at fault.

It reads one Experiment's report and predictions from the store, compares them with the
Dataset's current revision (so items already fixed drop out of the lists), and turns every
action into a Dataset revision through StoreControl: `relabel` for label fixes, `drop` for
samples taken out of training. Nothing retrains here; the next reconcile does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shardwise.api.common import dns_label_ok
from shardwise.brain.revision import RevisionState
from shardwise.control import StoreControl
from shardwise.data.table import SampleTable
from shardwise.diagnosis.predictions import Predictions
from shardwise.errors import NotFound
from shardwise.store.base import Store
from shardwise.ui import items as it
from shardwise.ui.errors import ApiError  # noqa: F401  (re-exported: the server imports it from here)
from shardwise.ui.fixes import Fixes, LocalFixes

FEATURES_SHOWN = 16  # tabular samples: how many feature values a card shows
THUMB_CACHE = 4096
STATE_NAMES = {it.OPEN: "open", it.RELABELLED: "relabelled", it.REMOVED: "removed"}


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment: str | None = None
    id: str = Field(min_length=1)
    action: Literal["relabel", "drop"]
    label: str | None = None


@dataclass(frozen=True)
class DatasetNow:
    """A Dataset's samples and its current revision."""

    name: str
    table: SampleTable
    pos: dict[str, int]  # sample id -> row
    state: RevisionState
    sha: str  # of the payload: thumbnails are cached under it


@dataclass
class Loaded:
    """One Experiment's report and predictions, with the lists derived from them."""

    name: str
    report: dict
    preds: Predictions
    lists: dict[str, it.Rows] = field(default_factory=dict)
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # per list: row -> dataset row


class Annotator:
    def __init__(self, store: Store, namespace: str, user: str, experiment: str | None = None,
                 log: Callable[[str], None] = lambda m: None, fixes: Fixes | None = None):
        """fixes: where actions go (default: Dataset revisions written here, as `user`)."""
        self.store, self.namespace, self.default, self.log = store, namespace, experiment, log
        self.control = StoreControl(store, namespace, log)
        self._lock = threading.RLock()  # the caches below and StoreControl's are shared by request threads
        self.fixes = fixes or LocalFixes(self.control, user, self._lock)
        self.user = self.fixes.user
        self.layout = self.control.layout
        self._loaded: dict[str, Loaded] = {}
        self._tables: dict[str, tuple[str, dict[str, int]]] = {}  # dataset -> (payload key, id -> row)
        self._thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._kinds: dict[tuple[str, int], str] = {}

    # -- experiments ------------------------------------------------------------------------
    def experiment_names(self) -> list[str]:
        return sorted(p.fields["experiment"] for k in self.store.list(self.layout.experiments())
                      if (p := self.layout.parse(k)) and p.kind == "experiment-report")

    def experiments(self) -> dict[str, Any]:
        with self._lock:
            out = []
            for name in self.experiment_names():
                r = self._report(name)
                out.append({k: r.get(k) for k in ("model", "version", "dataset", "datasetRevision", "split",
                                                   "accuracy")} | {"name": name})
            names = [e["name"] for e in out]
            default = self.default if self.default in names else (names[0] if names else None)
            return {"namespace": self.namespace, "user": self.user, "experiments": out, "default": default}

    def _report(self, name: str) -> dict:
        if not dns_label_ok(name):
            raise ApiError(400, f"experiment: {name!r} is not a DNS-1123 name", "experiment")
        try:
            return self.store.get_json(self.layout.experiment_report(name))
        except NotFound:
            raise ApiError(404, f"experiment: Experiment {self.namespace}/{name} has no report yet "
                                "(is it Succeeded? run `shardwise reconcile`)", "experiment") from None

    def _experiment(self, name: str | None) -> Loaded:
        if not name:
            name = self.experiments()["default"]
            if name is None:
                raise ApiError(404, f"experiment: no Experiment in namespace {self.namespace!r} has a report yet; "
                                    "apply one (kind: Experiment) and run `shardwise reconcile`", "experiment")
        report = self._report(name)
        old = self._loaded.get(name)
        if old is not None and old.report == report:
            return old
        key = report.get("predictionsKey") or self.layout.experiment_predictions(name)
        try:
            preds = Predictions.from_npz(self.store.get_verified(key))
        except NotFound:
            raise ApiError(409, f"experiment: Experiment {name} has a report but no predictions at {key} (it was "
                                "evaluated by an older version; re-run it)", "experiment") from None
        self._loaded[name] = Loaded(name, report, preds)
        return self._loaded[name]

    # -- datasets ---------------------------------------------------------------------------
    def _dataset(self, name: str) -> DatasetNow:
        if not dns_label_ok(name):
            raise ApiError(400, f"dataset: {name!r} is not a DNS-1123 name", "dataset")
        try:
            v = self.control.view(name)
        except NotFound:
            raise ApiError(404, f"dataset: Dataset {self.namespace}/{name} has not been ingested", "dataset") from None
        cached = self._tables.get(name)
        if cached is None or cached[0] != v.payload_key:  # the payload changes only when a forget removes rows
            cached = (v.payload_key, {s: i for i, s in enumerate(v.table.ids.tolist())})
            self._tables[name] = cached
        return DatasetNow(name, v.table, cached[1], v.state, v.payload_key)

    def _changes(self, dataset: str, since: int, upto: int, last: int = 50) -> list[dict[str, Any]]:
        out = []
        for r in range(max(since + 1, upto - last + 1), upto + 1):
            try:
                doc = self.store.get_json(self.layout.dataset_revision(dataset, r))
            except NotFound:
                continue
            out.append(change_summary(r, doc))
        return out[::-1]  # newest first

    # -- endpoints --------------------------------------------------------------------------
    def info(self, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            exp = self._experiment(params.get("experiment"))
            r, p = exp.report, exp.preds
            ds = self._dataset(r["dataset"])
            since = int(r.get("datasetRevision") or 0)
            issues = r.get("labelIssues") or {}
            return {
                "experiment": exp.name, "namespace": self.namespace, "user": self.user,
                "model": r.get("model"), "version": r.get("version"), "dataset": r["dataset"],
                "datasetRevision": since, "currentRevision": ds.state.revision, "split": r.get("split"),
                "samples": r.get("samples"), "accuracy": r.get("accuracy"), "classNames": list(p.class_names),
                "shards": p.shards, "isImage": ds.table.is_image,
                "featureCount": int(np.prod(ds.table.features.shape[1:])),
                "labelIssues": {"method": issues.get("method", "out-of-shard disagreement (from the predictions)"),
                                "flagged": issues.get("flagged")},
                "errors": len(self._rows(exp, "errors", ds)[0]),
                "changes": self._changes(r["dataset"], since, ds.state.revision),
                "pendingChanges": ds.state.revision - since,
                "notice": self.fixes.notice,
            }

    def items(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            q = it.ListQuery.parse(params)
        except ValueError as e:
            raise ApiError(400, str(e), str(e).split(":")[0]) from None
        with self._lock:
            exp = self._experiment(q.experiment)
            ds = self._dataset(exp.report["dataset"])
            names = exp.preds.class_names
            code = None
            if q.label is not None:
                if q.label not in names:
                    raise ApiError(400, f"label: {q.label!r} is not a class (classes: {', '.join(names)})", "label")
                code = names.index(q.label)
            rows, pos = self._rows(exp, q.view, ds)
            cur = ds.state.labels
            states = it.row_states(rows, pos, cur, ds.state.active)
            hit = it.select(rows, q, code, states)
            start, stop = it.page(hit.size, q.offset, q.limit)
            page = hit[start:stop]
            return {
                "experiment": exp.name, "view": q.view, "dataset": ds.name, "total": int(hit.size),
                "offset": start, "limit": q.limit, "listed": len(rows),
                "fixed": int((states != it.OPEN).sum()),
                "items": [self._item(rows, int(i), int(pos[i]), int(states[i]), ds, names) for i in page],
            }

    def _rows(self, exp: Loaded, view: str, ds: DatasetNow) -> tuple[it.Rows, np.ndarray]:
        if view == "browse":  # depends on the current revision: never cached
            p = _positions(exp.preds.ids, ds.pos)
            known = p >= 0
            q = np.where(known, p, 0)
            rows = it.browse_rows(exp.preds, ds.state.labels[q], known & ds.state.active[q])
            return rows, _positions(rows.ids, ds.pos)
        if view not in exp.lists:
            exp.lists[view] = (it.candidate_rows(exp.report, exp.preds) if view == "candidates"
                               else it.error_rows(exp.preds, exp.report.get("split") or "test"))
            exp.positions[view] = _positions(exp.lists[view].ids, ds.pos)
        return exp.lists[view], exp.positions[view]

    def _item(self, rows: it.Rows, i: int, p: int, state: int, ds: DatasetNow, names: tuple[str, ...]) -> dict:
        def name(c: int) -> str | None:
            return names[c] if 0 <= c < len(names) else None

        out: dict[str, Any] = {
            "id": str(rows.ids[i]), "label": name(int(rows.label[i])), "suggested": name(int(rows.suggested[i])),
            "score": _num(rows.score[i]), "labelProb": _num(rows.label_prob[i]),
            "suggestedProb": _num(rows.suggested_prob[i]), "train": bool(rows.train[i]),
            "shard": int(rows.shard[i]), "slice": int(rows.slice[i]), "state": STATE_NAMES[state],
            "current": name(int(ds.state.labels[p])) if p >= 0 and ds.state.active[p] else None,
        }
        if state == it.REMOVED and p >= 0:
            out["removedAt"] = rev = int(ds.state.tombstoned_at[p])
            out["removedBy"] = {"drop": "dropped", "forget": "forgotten"}.get(self._kind(ds.name, rev), "removed")
        if not ds.table.is_image and p >= 0:
            row = ds.table.features[p].ravel()
            out["features"] = [round(float(x), 4) for x in row[:FEATURES_SHOWN]]
        return out

    def _kind(self, dataset: str, revision: int) -> str:
        """What a revision did (revisions are immutable, so this is cached)."""
        key = (dataset, revision)
        if key not in self._kinds:
            try:
                doc = self.store.get_json(self.layout.dataset_revision(dataset, revision))
                self._kinds[key] = (doc.get("change") or {}).get("kind", "?")
            except NotFound:
                return "?"
        return self._kinds[key]

    def thumb(self, params: dict[str, str]) -> bytes:
        sid = params.get("id") or ""
        if not params.get("dataset"):
            raise ApiError(400, "dataset: required", "dataset")
        with self._lock:
            ds = self._dataset(params["dataset"])
            if sid not in ds.pos:
                raise ApiError(404, f"id: {sid!r} is not a sample of Dataset {ds.name!r}", "id")
            if not ds.table.is_image:
                raise ApiError(400, f"dataset: Dataset {ds.name!r} holds feature vectors, not images "
                                    "(the page shows their values instead)", "dataset")
            key = (ds.sha, sid)
            png = self._thumbs.get(key)
            if png is None:
                from shardwise.diagnosis.thumbnails import thumbnail_png

                png = self._thumbs[key] = thumbnail_png(ds.table.features[ds.pos[sid]], size=48)
                while len(self._thumbs) > THUMB_CACHE:
                    self._thumbs.popitem(last=False)
            return png

    def act(self, body: Any) -> dict[str, Any]:
        """Relabel or drop one sample: a new Dataset revision recording this server's user and the time."""
        try:
            a = ActionBody.model_validate(body)
        except ValidationError as e:
            msg = it.first_error(e)
            raise ApiError(400, msg, msg.split(":")[0]) from None
        with self._lock:
            exp = self._experiment(a.experiment)
            ds = self._dataset(exp.report["dataset"])
            check_action(a, ds)
            what = (f"relabelled {_label_at(ds, a.id)} → {a.label}" if a.action == "relabel" else "dropped")
        rev = self.fixes.apply(ds.name, a.action, a.id, a.label)  # in a cluster: waits for the operator, unlocked
        doc = self.store.get_json(self.layout.dataset_revision(ds.name, rev))
        return {"revision": rev, "dataset": ds.name, "change": doc["change"], "at": doc.get("createdAt"),
                "message": f"{a.id} {what}: Dataset {ds.name} revision {rev} (by {self.user}). {self.fixes.effect}"}


def check_action(a: ActionBody, ds: DatasetNow) -> None:
    """Refuse what relabel/drop would refuse, with the API's field names and HTTP statuses."""
    if a.id not in ds.pos:
        raise ApiError(404, f"id: {a.id!r} is not a sample of Dataset {ds.name!r}", "id")
    p = ds.pos[a.id]
    if not ds.state.active[p]:
        raise ApiError(409, f"id: {a.id} was already removed from Dataset {ds.name!r} at revision "
                            f"{int(ds.state.tombstoned_at[p])}", "id")
    names = ds.table.class_names
    if a.action == "relabel":
        if a.label is None or not a.label.strip():
            raise ApiError(400, "label: required to relabel; type one of the classes", "label")
        if a.label not in names:
            raise ApiError(400, f"label: {a.label!r} is not a class of Dataset {ds.name!r} "
                                f"(classes: {', '.join(names)})", "label")
        if names[int(ds.state.labels[p])] == a.label:
            raise ApiError(400, f"label: {a.id} already has label {a.label!r}", "label")
    elif a.label is not None:
        raise ApiError(400, "label: not used when dropping a sample", "label")


def change_summary(revision: int, doc: dict) -> dict[str, Any]:
    """One line of the page's change history from a revision manifest."""
    c = doc.get("change") or {}
    kind = c.get("kind", "?")
    if kind == "relabel":
        text = ", ".join(f"{x['id']}: {x['from']} → {x['to']}" if "id" in x else "a sample since forgotten"
                         for x in c.get("labels", [])[:5])
    elif kind == "drop":
        text = "dropped " + ", ".join(x if isinstance(x, str) else "a sample since forgotten"
                                      for x in c.get("ids", [])[:5])
    elif kind == "forget":
        text = f"forgot {c.get('samples')} sample(s) for " + ", ".join(
            r["name"] if isinstance(r, dict) else str(r) for r in c.get("requests", []))
    else:
        text = kind
    return {"revision": revision, "kind": kind, "by": c.get("by"), "at": c.get("at") or doc.get("createdAt"),
            "summary": text}


def _label_at(ds: DatasetNow, sid: str) -> str:
    return ds.table.class_names[int(ds.state.labels[ds.pos[sid]])]


def _positions(ids: np.ndarray, pos: dict[str, int]) -> np.ndarray:
    return np.array([pos.get(s, -1) for s in ids.tolist()], dtype=np.int64)


def _num(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)
