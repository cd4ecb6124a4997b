"""What a body supplies to the reconcile pass: its resources (where specs come from and statuses go) and
its executor (how work is started and seen). The kube body implements both on the API server and Jobs,
the local body on its registry in the store and trainer processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shardwise.api import Correction, Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import Resource, StatusBase
from shardwise.brain.model import StartJob
from shardwise.brain.versions import JobState
from shardwise.store.base import Store

SourceOpener = Callable[[str], Store]


@dataclass
class Snapshot:
    """The namespace's resources at the start of a pass. A resource whose spec does not validate is left
    out (the body has marked it Failed); an invalid Dataset is kept by name, as None, so that its models
    wait naming it rather than saying it does not exist."""

    datasets: dict[str, Dataset | None] = field(default_factory=dict)
    forgets: list[ForgetRequest] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    models: list[ShardedModel] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)


@dataclass(frozen=True)
class SourceAccess:
    """How a Dataset's source may be read: with `opener` ("s3://bucket" -> a Store; None: this process's
    environment), or not at all (`refusal`, a message naming the field)."""

    opener: SourceOpener | None = None
    refusal: str | None = None


class Resources(Protocol):
    async def snapshot(self) -> Snapshot: ...

    async def put_status(self, res: Resource, status: StatusBase) -> bool:
        """Persist `status` when it differs from the resource's (condition timestamps aside); set it on
        `res`. True when written."""

    async def create_model(self, owner: Experiment, model: ShardedModel) -> bool:
        """An Experiment's own ShardedModel (owned by it). False when it exists already."""

    async def source_access(self, ds: Dataset) -> SourceAccess: ...

    def event(self, res: Resource, reason: str, message: str) -> None:
        """Tell the people watching: an Event in a cluster, a log line locally."""

    def certified(self, fr: ForgetRequest) -> None:
        """A ForgetRequest just got its certificate (metrics)."""


class Work(Protocol):
    """What runs for one model now (its training, evaluation and experiment work), as one look."""

    def liveness(self, name: str, st: dict) -> JobState | None: ...

    def started(self, name: str) -> bool:
        """Whether work of this name exists already: running, or finished and still on record (not to be
        started again: a failed evaluation stays failed, as its Job does)."""

    def has_room(self) -> bool:
        """Whether more training can start now (a local body runs a few processes at a time)."""


class Executor(Protocol):
    async def work_of(self, m: ShardedModel) -> Work: ...

    async def start_training(self, m: ShardedModel, job: StartJob, request_key: str) -> bool:
        """Start one training job (the trainer's `train`); False when it exists already."""

    async def start_evaluation(self, m: ShardedModel, name: str, version: int, request_key: str) -> bool:
        """Start the held-out evaluation of a published version (the trainer's `evaluate`)."""

    async def start_experiment(self, exp: Experiment, m: ShardedModel, name: str, version: int,
                               request_key: str) -> bool:
        """Start an Experiment's test run of a version (the trainer's `evaluate` with an Experiment request)."""
