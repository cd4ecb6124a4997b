"""Published model versions and training jobs, as plain records. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shardwise.brain.lineage import Chain, CheckpointRef


@dataclass(frozen=True)
class VersionManifest:
    """A published model version: one full chain per shard, trained at `revision`."""

    version: int
    revision: int
    chains: tuple[Chain, ...]
    created: str = ""
    shard_samples: tuple[int, ...] | None = None  # training samples of each shard at `revision`

    def finals(self) -> list[CheckpointRef]:
        return [c[-1] for c in self.chains]

    def voting(self) -> list[bool]:
        """Which shards vote: a shard with no training sample has only its random initial weights."""
        if self.shard_samples is None:
            return [True] * len(self.chains)
        return [n > 0 for n in self.shard_samples]

    def keys(self) -> set[str]:
        return {ref.key for chain in self.chains for ref in chain}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "datasetRevision": self.revision,
            "created": self.created,
            "shards": [[ref.to_dict() for ref in chain] for chain in self.chains],
            **({"shardSamples": list(self.shard_samples)} if self.shard_samples is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VersionManifest:
        return cls(
            version=int(d["version"]),
            revision=int(d["datasetRevision"]),
            created=d.get("created", ""),
            chains=tuple(tuple(CheckpointRef.from_dict(x) for x in chain) for chain in d["shards"]),
            shard_samples=tuple(int(n) for n in d["shardSamples"]) if d.get("shardSamples") is not None else None,
        )


# waiting: the Job exists but is held (suspended until Kueue admits it); it counts as started work
JobState = Literal["waiting", "running", "succeeded", "failed"]
STARTED = ("waiting", "running")
# How a body sees a job: "waiting" (held for admission by a queue), "running", "succeeded", "failed", or
# None when it is not running anywhere (never started, or interrupted by a restart: start it again).
# The dict is the status the trainer wrote to the store ({} when none); a body may add a "message" to it.
JobLiveness = Callable[[str, dict[str, Any]], JobState | None]


@dataclass(frozen=True)
class JobRecord:
    """A trainer run for one shard over slices from_slice..R-1 at one dataset revision."""

    name: str
    shard: int
    from_slice: int
    revision: int
    state: JobState
    chain: Chain = ()  # on success: the shard's whole chain (kept prefix + new checkpoints)
    message: str = ""
    seconds: float = 0.0
    slices_done: int = 0
    corrupt: str = ""  # on failure: the key of a checkpoint that failed its sha256 check
    extra: dict[str, Any] = field(default_factory=dict)


def jobs_in_version(jobs: list[JobRecord], new_keys: set[str]) -> list[JobRecord]:
    """The jobs whose output a new version holds (`new_keys`: its checkpoints the previous one did not).
    A follow-up job builds on the checkpoints of the job it followed (a forget that landed mid-job), so
    matching whole chains would drop that one: a job counts when any checkpoint it trained is new."""
    return [j for j in jobs if j.state == "succeeded" and any(r.key in new_keys for r in j.chain[j.from_slice:])]


def job_name(model: str, shard: int, revision: int, from_slice: int) -> str:
    """Deterministic, so a restarted reconciler never starts the same work twice.

    At most 63 characters (a Kubernetes name); long model names are cut and
    made unique again with a short hash.
    """
    suffix = f"-s{shard}-r{revision}-f{from_slice}"
    base = model
    if len(base) + len(suffix) > 63:
        h = hashlib.sha256(model.encode()).hexdigest()[:6]
        base = f"{model[: 63 - len(suffix) - 7]}-{h}"
    return base + suffix
