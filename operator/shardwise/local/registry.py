"""The local body's API server: resources kept as JSON in the store.

It plays the part the Kubernetes API server plays for the kube body: metadata
(uid, generation, creationTimestamp), spec and status, and the checks a CEL rule
would make (immutable fields).
"""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from shardwise.api import KINDS, Dataset, Experiment, ShardedModel
from shardwise.api.common import Resource, iso, now
from shardwise.api.experiment import EXPERIMENT_LABEL
from shardwise.api.immutable import IMMUTABLE, message
from shardwise.errors import InvalidInput, NotFound
from shardwise.store.base import Store
from shardwise.store.layout import Layout

R = TypeVar("R", bound=Resource)


class Resources(Protocol):
    """Where a command reads resources: this registry, or a cluster's API server (kube.cluster)."""

    def get(self, cls: type[R], name: str) -> R | None: ...
    def require(self, cls: type[R], name: str) -> R: ...
    def list(self, cls: type[R]) -> list[R]: ...


class Registry:
    def __init__(self, store: Store, namespace: str):
        self.store, self.layout, self.namespace = store, Layout(namespace), namespace

    def _key(self, cls: type[Resource], name: str) -> str:
        return self.layout.resource(cls.PLURAL, name)

    def get(self, cls: type[R], name: str) -> R | None:
        try:
            return cls.model_validate(self.store.get_json(self._key(cls, name)))
        except NotFound:
            return None

    def require(self, cls: type[R], name: str) -> R:
        r = self.get(cls, name)
        if r is None:
            raise NotFound(f"{cls.KIND} {self.namespace}/{name} not found")
        return r

    def list(self, cls: type[R]) -> list[R]:
        keys = self.store.list(self.layout.resources(cls.PLURAL))
        return [cls.model_validate(self.store.get_json(k)) for k in keys if k.endswith(".json")]

    def check_apply(self, res: Resource) -> str:
        """What apply would do: created, configured or unchanged. Raises on immutable changes."""
        if res.metadata.namespace != self.namespace:
            raise InvalidInput(
                f"{res.kind} {res.name}: metadata.namespace {res.metadata.namespace!r} is not {self.namespace!r}"
            )
        old = self.get(type(res), res.name)
        if old is None:
            return "created"
        if old.spec == res.spec:
            return "unchanged"
        for field in IMMUTABLE.get(res.kind, ()):
            if getattr(old.spec, field) != getattr(res.spec, field):
                raise InvalidInput(f"{res.kind} {res.name}: {message(field)} (delete and recreate instead)")
        return "configured"

    def apply(self, res: Resource) -> str:
        verdict = self.check_apply(res)
        if verdict == "unchanged":
            return verdict
        old = self.get(type(res), res.name)
        meta = res.metadata.model_copy()
        if old is None:
            meta.uid = meta.uid or uuid.uuid4().hex[:12]
            meta.generation = 1
            meta.creationTimestamp = iso(now())
            status = None
        else:
            meta.uid, meta.creationTimestamp = old.metadata.uid, old.metadata.creationTimestamp
            meta.generation = (old.metadata.generation or 1) + 1
            status = old.status
        new = type(res).model_validate({**res.to_doc(), "metadata": meta.model_dump(mode="json")})
        new.status = status
        self.store.put_json(self._key(type(res), res.name), new.to_doc())
        return verdict

    def put_status(self, res: Resource) -> None:
        """Write the status back (the spec as stored wins: a status write never changes it)."""
        cur = self.get(type(res), res.name)
        if cur is None:
            return  # deleted meanwhile
        cur.status = res.status
        self.store.put_json(self._key(type(res), res.name), cur.to_doc())

    def delete(self, cls: type[Resource], name: str) -> None:
        res = self.get(cls, name)
        if res is None:
            raise NotFound(f"{cls.KIND} {self.namespace}/{name} not found")
        if cls is Dataset:  # what the operator's finalizer does: a Dataset in use stays
            users = [f"{k.KIND} {r.name}" for k in (ShardedModel, Experiment) for r in self.list(k)
                     if r.spec.datasetRef == name]
            if users:
                raise InvalidInput(f"Dataset {name} is used by {', '.join(users)}: delete them first "
                                   "(their checkpoints must stay forgettable)")
        self.store.delete(self._key(cls, name))
        if cls is ShardedModel:
            self._model_deleted(res)  # type: ignore[arg-type]
        if cls is Experiment:  # what the API server's garbage collector does for its owned model
            for m in self.list(ShardedModel):
                if m.metadata.labels.get(EXPERIMENT_LABEL) == name:
                    self.store.delete(self._key(ShardedModel, m.name))
                    self._model_deleted(m)

    def _model_deleted(self, m: ShardedModel) -> None:
        """storagePolicy Delete: its objects go, and the record beside its Dataset. Retain keeps both, so
        later forgets still find and purge its checkpoints."""
        if m.spec.storagePolicy == "Delete":
            uid = m.metadata.uid or "nouid"
            self.store.delete_prefix(self.layout.model_objects(m.name, uid))
            self.store.delete(self.layout.dataset_trained(m.spec.datasetRef, m.name, uid))


# kubectl-style abbreviations the CLI takes besides the CRDs' shortNames (swm, swds, swfr, swx).
# Kept out of the CRDs on purpose: in a cluster a short name is resolved across every API group,
# so `ds` would clash with DaemonSet's (and the 2-3 letter ones with whatever else a cluster
# installs); the local CLI has only these four kinds, so there they are unambiguous.
CLI_SHORT_NAMES = {"ShardedModel": ("sm",), "Dataset": ("ds",), "ForgetRequest": ("fr",), "Experiment": ("exp",),
                   "Correction": ("fix",)}


def kind_names(cls: type[Resource]) -> list[str]:
    """Every word the CLI takes for a kind (any case): plural, singular, the CRD's short names, the CLI's own."""
    return [cls.PLURAL, cls.KIND.lower(), *cls.SHORT_NAMES, *CLI_SHORT_NAMES.get(cls.KIND, ())]


def kind_of(word: str) -> type[Resource]:
    """'shardedmodels', 'shardedmodel', 'swm', 'sm', 'ShardedModel' -> the class."""
    w = word.lower()
    for cls in KINDS.values():
        if w in kind_names(cls):
            return cls
    raise InvalidInput(f"unknown kind {word!r}: use one of {', '.join(c.PLURAL for c in KINDS.values())} "
                       "(or a short name: see `shardwise get --help`)")
