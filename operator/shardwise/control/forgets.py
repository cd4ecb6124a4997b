"""Forget requests and the ledger: accept them as one Dataset revision, complete them with a certificate
once every model is purged, and chain the certificates in the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from shardwise.api import ForgetRequest, ShardedModel
from shardwise.api.common import iso, now
from shardwise.api.forget import ForgetRequestStatus
from shardwise.api.model import ShardedModelSpec
from shardwise.brain import forget as fbrain
from shardwise.brain.assignment import assign
from shardwise.control.base import _uid
from shardwise.control.experiments import ExperimentControl
from shardwise.datasets import DatasetView
from shardwise.faults import fault_point


class ForgetControl(ExperimentControl):
    """Forgets and the ledger."""

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
        waiting = fbrain.waiting_for(T, [(m.name, m.status) for m in models])
        if waiting is not None:
            phase, msg = waiting
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
        recs = [self.store.get_json(k) for k in sorted(self.store.list(self.layout.purges(model, uid)))
                if (p := self.layout.parse(k)) and p.kind == "purge-record"]
        return next((r for r in recs if r["revision"] >= revision), {})

    # -- ledger -------------------------------------------------------------------------
    def _ledgered(self, request: str, revision: int | None) -> dict | None:
        """The certificate already in the ledger for this request and revision, if any."""
        for key in reversed(self._ledger_keys()):
            if self._ledger_request(key) == request:
                cert = self.store.get_json(key)["certificate"]
                if cert.get("datasetRevision") == revision:
                    return cert | {"ledgerEntry": key}
        return None

    def _ledger_request(self, key: str) -> str | None:
        p = self.layout.parse(key)
        return p.fields["request"] if p is not None and p.kind == "ledger-entry" else None

    def _ledger_keys(self) -> list[str]:
        return sorted(k for k in self.store.list(self.layout.ledger())
                      if (p := self.layout.parse(k)) and p.kind == "ledger-entry")

    def _append_ledger(self, request: str, cert: dict) -> str:
        keys = self._ledger_keys()
        prev = self.store.get_json(keys[-1])["hash"] if keys else "0" * 64
        key = self.layout.ledger_entry(len(keys) + 1, request)
        self.store.put_json(key, fbrain.chain_entry(len(keys) + 1, prev, cert))
        return key


def _cells(v: DatasetView, tombstones: np.ndarray, spec: ShardedModelSpec) -> frozenset[tuple[int, int]]:
    """The (shard, slice) cells of a model that held the given forgotten samples (test samples hold none)."""
    t = v.forgotten.take(tombstones)
    a = assign(t.group_word if spec.groupBy == "owner" else t.id_word, t.train, spec.shards, spec.slices,
               spec.training.seed)
    m = a.shard >= 0
    return frozenset(zip(a.shard[m].tolist(), a.slice[m].tolist()))


def _plus_days(ts: str, days: int) -> str:
    return (datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ") + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _forget_status(fr: ForgetRequest, phase: str, ctype: str, cstatus, reason: str, msg: str) -> ForgetRequestStatus:
    st = (fr.status or ForgetRequestStatus()).model_copy(deep=True)
    st.phase = phase
    st.observedGeneration = fr.metadata.generation
    st.message = msg
    st.set_condition(ctype, cstatus, reason, msg)
    return st
