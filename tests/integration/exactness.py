"""Helpers for the exactness checks shared by the integration tests.

Exactness: a shard retrained after a forget has the very weights (torch.equal on
every tensor, and the same weights sha256) of a model trained from scratch on the
dataset without the forgotten samples.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import torch

from shardwise.api import ShardedModel
from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.versions import VersionManifest
from shardwise.store.base import Store
from shardwise.store.layout import Layout

NS = "default"


def version_doc(store: Store, m: ShardedModel, n: int | None = None, ns: str = NS) -> dict:
    """The stored version document (manifest plus "jobs", "newCheckpoints"...); the published one by default."""
    L = Layout(ns)
    if n is None:
        n = store.get_json(L.current(m.name, m.metadata.uid))["version"]
    return store.get_json(L.version(m.name, m.metadata.uid, n))


def published(store: Store, m: ShardedModel, ns: str = NS) -> VersionManifest:
    return VersionManifest.from_dict(version_doc(store, m, ns=ns))


def tensors(store: Store, ref: CheckpointRef) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(store.get_verified(ref.key, ref.sha256)), weights_only=True)["model"]


def assert_exact(store: Store, got: VersionManifest, ref: VersionManifest, shards: Iterable[int]) -> None:
    """Each shard's final checkpoint in `got` has exactly the weights of the one in `ref`."""
    for k in shards:
        a, b = tensors(store, got.chains[k][-1]), tensors(store, ref.chains[k][-1])
        assert a.keys() == b.keys() and all(torch.equal(a[x], b[x]) for x in a), f"shard {k} differs"
        assert got.chains[k][-1].weights_sha256 == ref.chains[k][-1].weights_sha256, f"shard {k} weights hash"


def train_in_process(store: Store, spec, revision: int, chains: list | None = None, dataset: str = "d",
                     model: str = "m", ns: str = NS) -> list[tuple[CheckpointRef, ...]]:
    """Bring every shard's chain up to `revision` as the reconciler would, with the trainer run
    in-process (the same train_shard a trainer process runs): the brain plans each shard from its
    lineage, the trainer retrains it from the first stale slice. Returns the chains."""
    from shardwise.brain.lineage import plan_shard, slice_fingerprints
    from shardwise.datasets import DatasetStore
    from shardwise_trainer.train import train_shard

    v = DatasetStore(store, Layout(ns)).view(dataset, revision)
    a = v.assignment(spec.shards, spec.slices, spec.training.seed, spec.groupBy == "owner")
    fps = slice_fingerprints(a, v.state, v.id_words)
    out = []
    for k in range(spec.shards):
        chain = chains[k] if chains else None
        plan = plan_shard(k, chain, fps[k])
        if plan is None:
            out.append(chain)
            continue
        request = {"job": f"{model}-s{k}-r{revision}-f{plan.from_slice}", "namespace": ns, "model": model,
                   "uid": "u", "spec": spec.model_dump(mode="json"), "dataset": dataset, "shard": k,
                   "fromSlice": plan.from_slice, "revision": revision, "keep": [r.to_dict() for r in plan.keep]}
        refs, _ = train_shard(store, request)
        out.append(tuple(plan.keep) + tuple(refs))
    return out
