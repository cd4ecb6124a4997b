"""Proof of purge: walk the whole store and report every object derived from a forgotten sample.

The reconciler purges what its own records say holds a forgotten sample. This scan
trusts none of those records: it lists every object under the namespace (on a
versioned S3 bucket every version of every object, delete markers aside) and
judges each one from the Dataset's tombstones and what the object itself says:

- a checkpoint holds sample x (tombstoned at revision t) when x lies in its shard at
  a slice <= its slice and its lineage read that slice before t (brain.purge). The
  lineage comes from every stored version of its meta.json, and the revision in its
  key bounds it too (every slice of a checkpoint trained at revision r was read at
  r or before), so a checkpoint that lost its meta.json is still judged;
- a meta.json, version manifest, job request or job status: when a checkpoint it
  names holds a forgotten sample;
- any object but a checkpoint's weights (payloads, states, manifests, job records, experiment
  predictions and reports, resources, the ledger, and objects of no known kind): when it names a
  forgotten sample's id or owner key in plain text. The scan keeps no list of them: it reads every
  string the object holds (JSON keys and values, string arrays of an .npz, words of other text),
  and tests the keyed tag of each against the Dataset's tombstones;
- a folder store's leftover temp file: content unknown, always reported.

ForgetRequest objects name what they forget, by design, and Correction objects name what someone
relabelled or dropped: they are listed as `retained`, not as findings (delete them once their
certificates are kept, or once applied; a Dataset's own history names forgotten samples by tag only).

A model whose spec is unknown (deleted with its objects retained) cannot be assigned
to shards: its objects trained before the latest forget are reported as unprovable.
Objects of no known kind are listed as unchecked, never silently passed.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shardwise.api import ShardedModel
from shardwise.api.model import ShardedModelSpec
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.purge import Gone, held_tombstones
from shardwise.datasets import DatasetKey, DatasetStore, DatasetView
from shardwise.errors import ShardwiseError
from shardwise.store.base import Store
from shardwise.store.layout import Layout, parse_key
from shardwise.store.local import TMP_PREFIX, LocalStore
from shardwise.store.s3 import S3Store

MAX_IDS = 5  # forgotten ids named in one finding

# Keys relative to "<namespace>/": what each object is.
# What the scan judges each kind of key (store/layout.py names and parses the keys) as.
_SCAN_KIND = {
    "checkpoint": "checkpoint", "checkpoint-meta": "meta", "version": "version",
    "job-request": "job", "job-status": "job", "evaluation": "eval", "evaluation-request": "eval",
    "current": "record", "purge-record": "record",  # a pointer, a purge record
    "dataset-payload": "payload", "dataset-current": "record", "dataset-schema": "record", "dataset-secret": "record",
    "dataset-revision": "record", "dataset-state": "record", "dataset-trained": "record",
    "experiment-predictions": "predictions", "experiment-report": "report", "experiment-request": "record",
    "resource": "record", "ledger-entry": "record",
}
_REQUESTS = ("forgetrequests", "corrections")  # resources that name the samples they are about


def classify(rel: str) -> tuple[str, dict[str, str]] | None:
    """(kind, fields) of a key relative to the namespace prefix; None when no known kind. Pure."""
    p = parse_key(rel)
    if p is None:
        return None
    if p.kind == "resource" and p.fields["plural"] in _REQUESTS:
        return "request", p.fields
    return _SCAN_KIND[p.kind], p.fields


@dataclass(frozen=True)
class Finding:
    """One stored object (one version of it) still derived from forgotten samples."""

    key: str
    version: str | None  # the S3 version id; None on a folder store or an unversioned bucket
    kind: str
    reason: str

    def __str__(self) -> str:
        v = f" (version {self.version})" if self.version and self.version != "null" else ""
        return f"{self.key}{v}: {self.kind}: {self.reason}"


@dataclass(frozen=True)
class Entry:
    """One stored object version as listed."""

    key: str
    version: str | None = None
    delete_marker: bool = False


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    objects: int = 0  # distinct keys with data
    versions: int = 0  # stored versions read or judged (== objects on an unversioned store)
    delete_markers: int = 0
    forgotten: dict[str, int] = field(default_factory=dict)  # dataset -> samples forgotten
    unchecked: list[str] = field(default_factory=list)  # keys of no known kind (still read for names)
    retained: list[str] = field(default_factory=list)  # ForgetRequest objects naming what they forgot, by design

    @property
    def clean(self) -> bool:
        return not self.findings


# -- pure judgements ---------------------------------------------------------------------
def key_bound_ref(shard: int, slc: int, rev: int, key: str) -> CheckpointRef:
    """What a checkpoint's key alone proves: every slice 0..slc was read at revision rev or before."""
    return CheckpointRef(shard, slc, key, "", "", (), (rev,) * (slc + 1))


def checkpoint_held(shard: int, slc: int, rev: int, key: str, lineages: Iterable[CheckpointRef],
                    gone: Gone) -> set[int]:
    """Revisions of gone samples a checkpoint holds, by its key bound and by every lineage recorded for it."""
    held = held_tombstones(key_bound_ref(shard, slc, rev, key), gone)
    for ref in lineages:
        if ref.shard == shard and ref.slice == slc and len(ref.revisions) == slc + 1:
            held |= held_tombstones(ref, gone)
        else:  # a lineage that does not fit its key: trust neither, assume the worst
            held |= held_tombstones(key_bound_ref(shard, slc, 0, key), gone)
    return held


def refs_held(refs: Iterable[CheckpointRef], namespace: str, gone: Gone) -> dict[str, set[int]]:
    """For manifests and job records: each named checkpoint that holds forgotten samples."""
    out: dict[str, set[int]] = {}
    prefix = Layout(namespace).root()
    for ref in refs:
        c = classify(ref.key[len(prefix):]) if ref.key.startswith(prefix) else None
        bound = int(c[1]["revision"]) if c and c[0] == "checkpoint" else 0  # a key of no known form: assume the worst
        h = checkpoint_held(ref.shard, ref.slice, bound, ref.key, [ref], gone)
        if h:
            out[ref.key] = h
    return out


_WORD_SPLIT = re.compile(r"""[\s"'`,;()\[\]{}<>=|]+""")


def strings_of(data: bytes, key: str) -> Iterator[str]:
    """Every string an object holds: JSON keys and values, the string arrays of an .npz, else its words.

    Each string is given whole and split into words (quotes, brackets, commas and spaces separate
    them), so an id inside a message is found too."""
    def whole_and_words(text: str) -> Iterator[str]:
        yield text
        if len(text) < 100_000:
            yield from (w for w in _WORD_SPLIT.split(text) if w and w != text)

    if data[:2] == b"PK" and key.endswith(".npz"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            for name in z.files:
                yield name
                arr = z[name]
                if arr.dtype.kind == "U":
                    for x in arr.ravel().tolist():
                        yield from whole_and_words(x)
                elif arr.dtype.kind == "S":
                    for x in arr.ravel().tolist():
                        yield from whole_and_words(x.decode("utf-8", "replace"))
        return
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        yield from whole_and_words(data.decode("utf-8", "replace"))
        return
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                yield from whole_and_words(k)
                stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str):
            yield from whole_and_words(x)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            yield str(x)


@dataclass(frozen=True)
class Forgotten:
    """What one Dataset forgot, as its key can recognise it."""

    dataset: str
    key: DatasetKey
    id_tags: frozenset[bytes]
    owner_tags: frozenset[bytes]

    def named(self, strings: Iterable[str]) -> tuple[set[str], set[str]]:
        """(forgotten ids, forgotten owner keys) among the strings."""
        ids, owners = set(), set()
        for text in set(strings):
            if len(text) > 256:  # longer than any id or owner key a Dataset accepts
                continue
            if self.key.tag("id", text) in self.id_tags:
                ids.add(text)
            if self.owner_tags and self.key.tag("owner", text) in self.owner_tags:
                owners.add(text)
        return ids, owners


def _ids(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def _revs(held: set[int]) -> str:
    return ", ".join(str(t) for t in sorted(held))


# -- I/O -----------------------------------------------------------------------------------
def list_entries(store: Store, prefix: str) -> list[Entry]:
    """Every stored version under prefix: all S3 versions where the store keeps them, else one per key.

    A folder store also shows its leftover temp files (an interrupted write), which list() hides.
    """
    if isinstance(store, S3Store):
        return [Entry(v.key, v.version_id, v.is_delete_marker) for v in store.list_versions(prefix)]
    out = [Entry(k) for k in store.list(prefix)]
    if isinstance(store, LocalStore) and (store.root / prefix).is_dir():
        for dirpath, _, files in os.walk(store.root / prefix):
            for f in files:
                if f.startswith(TMP_PREFIX):
                    out.append(Entry(os.path.relpath(os.path.join(dirpath, f), store.root).replace(os.sep, "/")))
    return out


def _read(store: Store, e: Entry) -> bytes:
    if isinstance(store, S3Store) and e.version:
        return store.get_bytes(e.key, version_id=e.version)
    return store.get_bytes(e.key)


def _json(store: Store, e: Entry) -> Any:
    return json.loads(_read(store, e))


MAX_SCANNED = 512 * 2**20  # objects larger than this are not read for names (checkpoints never are)


class _Scan:
    def __init__(self, store: Store, namespace: str, models: list[ShardedModel]):
        self.store, self.ns, self.L = store, namespace, Layout(namespace)
        self.report = ScanReport()
        self.datasets = DatasetStore(store, self.L)
        self.views: dict[str, DatasetView | None] = {}
        self.gones: dict[tuple, Gone] = {}
        self.specs: dict[tuple[str, str], ShardedModelSpec] = {
            (m.name, m.metadata.uid or "nouid"): m.spec for m in models}
        self.meta_refs: dict[tuple[str, str | None], CheckpointRef | None] = {}
        self.forgotten: dict[str, Forgotten] = {}

    def find(self, e: Entry, kind: str, reason: str) -> None:
        self.report.findings.append(Finding(e.key, e.version, kind, reason))

    def view(self, dataset: str) -> DatasetView | None:
        if dataset not in self.views:
            try:
                self.views[dataset] = self.datasets.view(dataset)
            except ShardwiseError as err:
                self.views[dataset] = None
                self.report.findings.append(Finding(self.L.dataset_current(dataset), None, "dataset",
                                                    f"cannot read Dataset {dataset!r} to learn what it forgot: {err}"))
        return self.views[dataset]

    def latest_forget(self) -> int:
        """The highest revision from which some sample is no longer trained on (0 when none)."""
        out = 0
        for v in self.views.values():
            if v is None:
                continue
            if len(v.forgotten):
                out = max(out, int(v.forgotten.since.max()))
            if (~v.state.active).any():
                out = max(out, int(v.state.tombstoned_at.max()))
        return out

    def model_basis(self, model: str, uid: str) -> Gone | str:
        """Where the gone samples lay in a model, or why that cannot be known."""
        spec = self.specs.get((model, uid))
        if spec is None:
            return f"no ShardedModel spec is known for model {model!r} (uid {uid})"
        v = self.view(spec.datasetRef)
        if v is None:
            return f"Dataset {spec.datasetRef!r} of model {model!r} cannot be read"
        k = (spec.datasetRef, spec.shards, spec.slices, spec.training.seed, spec.groupBy == "owner")
        if k not in self.gones:
            self.gones[k] = v.gone(*k[1:])
        return self.gones[k]

    def unprovable(self, e: Entry, kind: str, why: str, revision: int) -> None:
        """No basis to judge: report what was trained before the latest forget (it may hold it)."""
        t = self.latest_forget()
        if revision < t:
            self.find(e, kind, f"{why}, and it was trained at revision {revision}, before forget revision {t}: "
                               "it cannot be shown free of forgotten samples (delete it if its model is gone)")

    # -- the walk ---------------------------------------------------------------------------
    def run(self) -> ScanReport:
        prefix = self.L.root()
        entries = list_entries(self.store, prefix)
        live = [e for e in entries if not e.delete_marker]
        self.report.delete_markers = len(entries) - len(live)
        self.report.versions = len(live)
        self.report.objects = len({e.key for e in live})
        kinds = [(e, classify(e.key[len(prefix):])) for e in live]
        for e, _ in kinds:  # what was forgotten, per Dataset
            p = parse_key(e.key[len(prefix):])
            if p is not None and p.kind == "dataset-current":
                self._learn_dataset(p.fields["dataset"])
        lineages: dict[str, list[CheckpointRef]] = {}
        for e, c in kinds:  # what the store itself says: specs of models, lineages of every meta
            if c and c[0] in ("job", "eval") and e.key.endswith("request.json"):
                self._learn_spec(e, c[1])
            elif c and c[0] == "record" and "/trained/" in e.key:
                self._learn_trained(e)
            elif c and c[0] == "meta":
                ref = self.meta_refs[(e.key, e.version)] = self._ref(e)
                if ref is not None:
                    lineages.setdefault(Layout.checkpoint_of_meta(e.key), []).append(ref)
        for e, c in kinds:
            name = os.path.basename(e.key)
            if name.startswith(TMP_PREFIX):
                self.find(e, "partial-write", "a temp file an interrupted write left behind; its content is "
                                              "unknown: delete it")
                continue
            if c is None:
                self.report.unchecked.append(e.key)
            elif c[0] in ("checkpoint", "meta"):
                self._checkpoint(e, c[0], c[1], lineages)
            elif c[0] in ("version", "job"):
                self._refs_doc(e, c[0], c[1])
            if c is None or c[0] != "checkpoint":
                self._names(e, c[0] if c else "object", c[1].get("dataset") if c else None)
        self.report.unchecked.sort()
        self.report.retained.sort()
        return self.report

    def _learn_dataset(self, name: str) -> None:
        v = self.view(name)
        if v is None:
            return
        self.report.forgotten[name] = len(v.forgotten)
        t = v.forgotten
        self.forgotten[name] = Forgotten(name, self.datasets.key(name), frozenset(t.id_tag.tolist()),
                                         frozenset(x for x in t.owner_tag.tolist() if x))

    def _learn_spec(self, e: Entry, f: dict[str, str]) -> None:
        key = (f["model"], f["uid"])
        if key in self.specs:
            return
        try:
            self.specs[key] = ShardedModelSpec.model_validate(_json(self.store, e)["spec"])
        except (ShardwiseError, ValueError, KeyError, TypeError):
            pass  # a request that does not parse teaches nothing; the objects are judged without it

    def _learn_trained(self, e: Entry) -> None:
        try:
            doc = _json(self.store, e)
            self.specs.setdefault((doc["model"], doc["uid"]), ShardedModelSpec.model_validate(doc["spec"]))
        except (ShardwiseError, ValueError, KeyError, TypeError):
            pass

    def _ref(self, e: Entry) -> CheckpointRef | None:
        try:
            return CheckpointRef.from_dict(_json(self.store, e))
        except (ShardwiseError, ValueError, KeyError, TypeError) as err:
            self.find(e, "meta", f"lineage record cannot be read ({type(err).__name__}: {err})")
            return None

    def _checkpoint(self, e: Entry, kind: str, f: dict[str, str], lineages: dict[str, list[CheckpointRef]]) -> None:
        shard, slc, rev = int(f["shard"]), int(f["slice"]), int(f["revision"])
        basis = self.model_basis(f["model"], f["uid"])
        if isinstance(basis, str):
            self.unprovable(e, kind, basis, rev)
            return
        ckpt = e.key if kind == "checkpoint" else Layout.checkpoint_of_meta(e.key)
        mine = lineages.get(ckpt, [])  # a checkpoint: by every version of its meta.json
        if kind == "meta":  # a meta.json version: by its own lineage (an unreadable one is reported already)
            ref = self.meta_refs.get((e.key, e.version))
            if ref is None:
                return
            mine = [ref]
        held = checkpoint_held(shard, slc, rev, ckpt, mine, basis)
        if held:
            what = "checkpoint" if kind == "checkpoint" else "lineage record of a checkpoint that"
            self.find(e, kind, f"{what} trained on samples forgotten at revision(s) {_revs(held)} "
                               f"(shard {shard}, slices 0..{slc}, lineage read at {self._lineage(mine, rev, slc)})")

    @staticmethod
    def _lineage(refs: list[CheckpointRef], rev: int, slc: int) -> str:
        return " / ".join(str(list(r.revisions)) for r in refs) if refs else f"revision <= {rev} (no meta.json)"

    def _refs_doc(self, e: Entry, kind: str, f: dict[str, str]) -> None:
        try:
            doc = _json(self.store, e)
            dicts = [x for chain in doc.get("shards", []) for x in chain] if kind == "version" else \
                [*doc.get("keep", []), *([doc["parent"]] if doc.get("parent") else []), *doc.get("chain", [])]
            refs = [CheckpointRef.from_dict(x) for x in dicts]
        except (ShardwiseError, ValueError, KeyError, TypeError, AttributeError) as err:
            self.find(e, kind, f"cannot be read ({type(err).__name__}: {err})")
            return
        basis = self.model_basis(f["model"], f["uid"])
        if isinstance(basis, str):
            revs = [r for ref in refs for r in ref.revisions]
            if revs:
                self.unprovable(e, kind, basis, min(revs))
            return
        held = refs_held(refs, self.ns, basis)
        if held:
            what = "version manifest" if kind == "version" else "job record"
            self.find(e, kind, f"{what} names {len(held)} checkpoint(s) trained on samples forgotten at revision(s) "
                               f"{_revs(set().union(*held.values()))}: {', '.join(sorted(held)[:3])}"
                               f"{' ...' if len(held) > 3 else ''}")

    def _names(self, e: Entry, kind: str, dataset: str | None) -> None:
        """Does the object name a forgotten sample (its id or owner key) in plain text?"""
        checks = [self.forgotten[dataset]] if dataset in self.forgotten else list(self.forgotten.values())
        checks = [c for c in checks if c.id_tags or c.owner_tags]
        if not checks:
            return
        try:
            data = _read(self.store, e)
        except ShardwiseError as err:
            self.find(e, kind, f"cannot be read ({err}); it may name forgotten samples")
            return
        if len(data) > MAX_SCANNED:
            self.report.unchecked.append(e.key)
            return
        try:
            strings = list(strings_of(data, e.key))
        except (ValueError, OSError, KeyError) as err:
            self.find(e, kind, f"cannot be read ({type(err).__name__}: {err}); it may name forgotten samples")
            return
        for f in checks:
            ids, owners = f.named(strings)
            if not ids and not owners:
                continue
            if kind == "request":  # a ForgetRequest or Correction names its samples: by design, listed apart
                self.report.retained.append(e.key)
                return
            what = []
            if ids:
                what.append(f"the id of {len(ids)} forgotten sample(s): {_ids(ids)}")
            if owners:
                what.append(f"the owner key of {len(owners)} forgotten owner(s)")
            self.find(e, kind, f"names, in plain text, {' and '.join(what)} (Dataset {f.dataset!r})")


def load_models(paths: list[str]) -> list[ShardedModel]:
    """The ShardedModels of YAML files, single documents or a `kubectl get -o yaml` List; uids kept."""
    import yaml

    from shardwise.api.validation import parse_doc
    from shardwise.errors import InvalidInput

    out: list[ShardedModel] = []
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except OSError as e:
            raise InvalidInput(f"--models {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise InvalidInput(f"--models {path}: not valid YAML: {e}") from None
        items = [i for d in docs for i in (d.get("items", []) if isinstance(d, dict) and d.get("kind") == "List"
                                           else [d])]
        for n, item in enumerate(items, 1):
            if isinstance(item, dict) and item.get("kind") == "ShardedModel":
                res = parse_doc(item, f"--models {path} item {n}")
                if not res.metadata.uid:
                    raise InvalidInput(f"--models {path} item {n}: ShardedModel {res.name} has no metadata.uid "
                                       "(its store prefix); export it with kubectl get -o yaml")
                out.append(res)  # type: ignore[arg-type]
    return out


def scan_for_forgotten(store: Store, namespace: str, models: list[ShardedModel] | None = None) -> ScanReport:
    """Every object under the namespace (every version, on a versioned bucket) still derived from a
    forgotten sample. models: the ShardedModels whose specs place samples in shards (the local
    body keeps them in the store; pass the cluster's for the kube body)."""
    return _Scan(store, namespace, list(models or [])).run()
