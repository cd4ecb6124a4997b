"""Where everything lives in the store: one prefix per namespace (tenant).

Keys are built only from validated DNS-1123 names and integers, so no user
input can reach outside its namespace's prefix.
"""

from __future__ import annotations

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

    # -- resources of the local body (the kube body keeps them in the API server)
    def resource(self, plural: str, name: str) -> str:
        return f"{self.namespace}/resources/{plural}/{_ok('name', name)}.json"

    def resources(self, plural: str) -> str:
        return f"{self.namespace}/resources/{plural}/"

    # -- datasets
    def dataset(self, ds: str) -> str:
        return f"{self.namespace}/datasets/{_ok('dataset', ds)}"

    def dataset_current(self, ds: str) -> str:
        return f"{self.dataset(ds)}/current.json"

    def dataset_payload(self, ds: str, sha: str) -> str:
        return f"{self.dataset(ds)}/payload/{sha}.npz"

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

    def checkpoint(self, name: str, uid: str, shard: int, slc: int, rev: int) -> str:
        return f"{self.model(name, uid)}/shard-{shard}/slice-{slc}/r{rev:06d}/checkpoint"

    def checkpoint_meta(self, ckpt_key: str) -> str:
        return ckpt_key.rsplit("/", 1)[0] + "/meta.json"

    def job_request(self, name: str, uid: str, job: str) -> str:
        return f"{self.model(name, uid)}/jobs/{_ok('job', job)}/request.json"

    def job_status(self, name: str, uid: str, job: str) -> str:
        return f"{self.model(name, uid)}/jobs/{_ok('job', job)}/status.json"

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

    def purge_record(self, name: str, uid: str, rev: int) -> str:
        return f"{self.model(name, uid)}/purges/{rev:06d}.json"

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
