"""Spec fields that may not change once a resource exists: one table for both bodies.

The local registry refuses a change to any of them; the CRDs carry the same table as CEL
transition rules, so the API server refuses it in a cluster. A ShardedModel's training settings
are here because its checkpoints and published versions were made with them: a changed
architecture or learning rate would leave a version whose shards disagree with its spec (and a
later forget would retrain one shard with the new settings). Train a new ShardedModel, or let an
Experiment train one (spec.train), to try other settings.
"""

from __future__ import annotations

IMMUTABLE: dict[str, tuple[str, ...]] = {
    "Dataset": ("source", "testFraction", "seed", "classes"),
    "ShardedModel": ("datasetRef", "shards", "slices", "groupBy", "architecture", "training"),
    "ForgetRequest": ("datasetRef", "sampleIds", "ownerKey", "deadlineDays"),
    "Experiment": ("train",),
    "Correction": ("datasetRef", "author", "relabel", "drop"),
}


def message(field: str) -> str:
    return f"spec.{field} is immutable"


def cel_rule(field: str) -> dict[str, str]:
    """The transition rule for one field; written with has() so that it holds for optional fields too."""
    f = field
    return {"rule": f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
            "message": message(field)}
