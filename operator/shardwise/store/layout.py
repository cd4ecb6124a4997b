"""Where everything lives in the store: one prefix per namespace (tenant).

Keys are built only from validated DNS-1123 names and integers, so no user
input can reach outside its namespace's prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shardwise.api.common import dns_label_ok
from shardwise.errors import InvalidInput


def _ok(kind: str, name: str) -> str:
    if not dns_label_ok(name):
        raise InvalidInput(f"{kind} {name!r} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
    return name


@dataclass(frozen=True)
class Layout:
    namespace: str

    def __post_init__(self) -> None:
        _ok("namespace", self.namespace)

    def root(self) -> str:
        """The namespace's prefix: every key of it starts so."""
        return f"{self.namespace}/"

    # -- resources of the local body (the kube body keeps them in the API server)
    def resource(self, plural: str, name: str) -> str:
        return f"{self.namespace}/resources/{plural}/{_ok('name', name)}.json"

    def resources(self, plural: str) -> str:
        return f"{self.namespace}/resources/{plural}/"

    # -- datasets
    def dataset(self, ds: str) -> str:
        return f"{self.namespace}/datasets/{_ok('dataset', ds)}"

    def dataset_objects(self, ds: str) -> str:
        return f"{self.dataset(ds)}/"

    def dataset_current(self, ds: str) -> str:
        return f"{self.dataset(ds)}/current.json"

    def dataset_payloads(self, ds: str) -> str:
        return f"{self.dataset(ds)}/payload/"

    def dataset_payload(self, ds: str, sha: str) -> str:
        return f"{self.dataset_payloads(ds)}{sha}.npz"

    def dataset_schema(self, ds: str) -> str:
        return f"{self.dataset(ds)}/schema.json"

    def dataset_secret(self, ds: str) -> str:
        return f"{self.dataset(ds)}/secret.json"

    def dataset_trained(self, ds: str, model: str, uid: str) -> str:
        """The record that a model (live, or deleted with its checkpoints retained) trains on the Dataset."""
        return f"{self.dataset_trained_prefix(ds)}{_ok('model', model)}.{_ok('uid', uid)}.json"

    def dataset_trained_prefix(self, ds: str) -> str:
        return f"{self.dataset(ds)}/trained/"

    def dataset_revision(self, ds: str, rev: int) -> str:
        return f"{self.dataset(ds)}/{rev:06d}/manifest.json"

    def dataset_state(self, ds: str, rev: int) -> str:
        return f"{self.dataset(ds)}/{rev:06d}/state.npz"

    # -- models
    def model(self, name: str, uid: str) -> str:
        return f"{self.namespace}/models/{_ok('model', name)}/{_ok('uid', uid)}"

    def model_objects(self, name: str, uid: str) -> str:
        """The prefix of everything stored for one model (its deletion removes it)."""
        return f"{self.model(name, uid)}/"

    def checkpoint(self, name: str, uid: str, shard: int, slc: int, rev: int) -> str:
        return f"{self.model(name, uid)}/shard-{shard}/slice-{slc}/r{rev:06d}/checkpoint"

    def checkpoint_meta(self, ckpt_key: str) -> str:
        return ckpt_key.rsplit("/", 1)[0] + "/meta.json"

    def jobs(self, name: str, uid: str) -> str:
        return f"{self.model(name, uid)}/jobs/"

    def job(self, name: str, uid: str, job: str) -> str:
        return f"{self.jobs(name, uid)}{_ok('job', job)}/"

    def job_request(self, name: str, uid: str, job: str) -> str:
        return f"{self.job(name, uid, job)}request.json"

    def job_status(self, name: str, uid: str, job: str) -> str:
        return f"{self.job(name, uid, job)}status.json"

    def versions(self, name: str, uid: str) -> str:
        return f"{self.model(name, uid)}/versions/"

    def version(self, name: str, uid: str, n: int) -> str:
        return f"{self.versions(name, uid)}{n:06d}.json"

    def current(self, name: str, uid: str) -> str:
        return f"{self.model(name, uid)}/current.json"

    def evaluation(self, name: str, uid: str, n: int) -> str:
        return f"{self.model(name, uid)}/evals/{n:06d}.json"

    def evaluation_request(self, name: str, uid: str, n: int) -> str:
        return f"{self.model(name, uid)}/evals/{n:06d}.request.json"

    def purges(self, name: str, uid: str) -> str:
        return f"{self.model(name, uid)}/purges/"

    def purge_record(self, name: str, uid: str, rev: int) -> str:
        return f"{self.purges(name, uid)}{rev:06d}.json"

    # -- experiments
    def experiments(self) -> str:
        return f"{self.namespace}/experiments/"

    def experiment_report(self, name: str) -> str:
        return f"{self.namespace}/experiments/{_ok('experiment', name)}/report.json"

    def experiment_request(self, name: str) -> str:
        return f"{self.namespace}/experiments/{_ok('experiment', name)}/request.json"

    def experiment_predictions(self, name: str) -> str:
        return f"{self.namespace}/experiments/{_ok('experiment', name)}/predictions.npz"

    # -- ledger of forget certificates (append-only, hash-chained)
    def ledger(self) -> str:
        return f"{self.namespace}/ledger/"

    def ledger_entry(self, seq: int, request: str) -> str:
        return f"{self.ledger()}{seq:06d}-{_ok('request', request)}.json"

    # -- reading keys back (the inverse of the builders above)
    def parse(self, key: str) -> ParsedKey | None:
        """What a key of this namespace is, and the names and numbers in it; None for a key of another
        namespace or of no known kind."""
        head = f"{self.namespace}/"
        return parse_key(key[len(head):]) if key.startswith(head) else None

    @staticmethod
    def checkpoint_of_meta(meta_key: str) -> str:
        """The checkpoint a meta.json describes (the inverse of checkpoint_meta)."""
        return meta_key.rsplit("/", 1)[0] + "/checkpoint"


@dataclass(frozen=True)
class ParsedKey:
    kind: str  # one of KEY_KINDS
    fields: dict[str, str]

    def int(self, name: str) -> int:
        return int(self.fields[name])


_ANY = r"[^/]+"  # as lenient as listing must be: a store may hold keys written before names were checked
KEY_KINDS: dict[str, str] = {kind: rx.replace("{}", _ANY) for kind, rx in {
    "checkpoint": r"models/(?P<model>{})/(?P<uid>{})/shard-(?P<shard>\d+)/slice-(?P<slice>\d+)/r(?P<revision>\d+)"
                  r"/checkpoint",
    "checkpoint-meta": r"models/(?P<model>{})/(?P<uid>{})/shard-(?P<shard>\d+)/slice-(?P<slice>\d+)/r(?P<revision>\d+)"
                       r"/meta\.json",
    "version": r"models/(?P<model>{})/(?P<uid>{})/versions/(?P<version>\d+)\.json",
    "current": r"models/(?P<model>{})/(?P<uid>{})/current\.json",
    "job-request": r"models/(?P<model>{})/(?P<uid>{})/jobs/(?P<job>{})/request\.json",
    "job-status": r"models/(?P<model>{})/(?P<uid>{})/jobs/(?P<job>{})/status\.json",
    "evaluation": r"models/(?P<model>{})/(?P<uid>{})/evals/(?P<version>\d+)\.json",
    "evaluation-request": r"models/(?P<model>{})/(?P<uid>{})/evals/(?P<version>\d+)\.request\.json",
    "purge-record": r"models/(?P<model>{})/(?P<uid>{})/purges/(?P<revision>\d+)\.json",
    "dataset-payload": r"datasets/(?P<dataset>{})/payload/(?P<sha>[0-9a-f]+)\.npz",
    "dataset-current": r"datasets/(?P<dataset>{})/current\.json",
    "dataset-schema": r"datasets/(?P<dataset>{})/schema\.json",
    "dataset-secret": r"datasets/(?P<dataset>{})/secret\.json",
    "dataset-revision": r"datasets/(?P<dataset>{})/(?P<revision>\d+)/manifest\.json",
    "dataset-state": r"datasets/(?P<dataset>{})/(?P<revision>\d+)/state\.npz",
    "dataset-trained": r"datasets/(?P<dataset>{})/trained/(?P<model>[^/.]+)\.(?P<uid>[^/]+)\.json",
    "experiment-report": r"experiments/(?P<experiment>{})/report\.json",
    "experiment-request": r"experiments/(?P<experiment>{})/request\.json",
    "experiment-predictions": r"experiments/(?P<experiment>{})/predictions\.npz",
    "resource": r"resources/(?P<plural>{})/(?P<name>{})\.json",
    "ledger-entry": r"ledger/(?P<seq>\d+)-(?P<request>{})\.json",
}.items()}
_COMPILED = [(kind, re.compile(rx)) for kind, rx in KEY_KINDS.items()]


def parse_key(rel: str) -> ParsedKey | None:
    """A key relative to its namespace's prefix, read back: its kind and fields. Pure."""
    for kind, rx in _COMPILED:
        m = rx.fullmatch(rel)
        if m:
            return ParsedKey(kind, {k: v for k, v in m.groupdict().items() if v is not None})
    return None
