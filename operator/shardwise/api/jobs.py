"""What crosses the boundary between the control plane and the trainer: the requests the control plane
writes to the store (a Job or process only names one) and the status the trainer writes back. The
trainer validates a request before it starts and exits 2 (bad configuration, never retried) naming
the field that does not fit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shardwise.api.common import Lenient, Strict
from shardwise.api.model import ShardedModelSpec


class Checkpoint(Strict):
    """A stored checkpoint as requests and statuses name it: brain.lineage.CheckpointRef's dict form
    (`CheckpointRef.of(c)`, `ref.checkpoint()`)."""

    shard: int = Field(ge=0)
    slice: int = Field(ge=0)
    key: str
    sha256: str
    weightsSha256: str
    fingerprints: list[str]
    revisions: list[int]


class TrainingRequest(Strict):
    """Train one shard from `fromSlice` to its last slice, on the Dataset at `revision`."""

    job: str
    namespace: str
    model: str
    uid: str
    spec: ShardedModelSpec
    dataset: str
    shard: int = Field(ge=0)
    fromSlice: int = Field(ge=0)
    revision: int = Field(ge=1)
    purpose: Literal["train", "retrain"] = "train"
    parent: Checkpoint | None = Field(None, description="The checkpoint it starts from (None: from scratch).")
    keep: list[Checkpoint] = Field(default_factory=list, description="The chain's slices before fromSlice.")


class JobStatus(Lenient):
    """What the trainer reports for a training job (the reconciler reads it with the job's liveness)."""

    state: Literal["running", "succeeded", "failed"] | None = None
    slicesDone: int = 0
    chain: list[Checkpoint] = Field(default_factory=list)
    computeSeconds: float = 0.0
    wallSeconds: float | None = None
    message: str = ""
    corrupt: str = Field("", description="The key of a stored object that failed its check.")
    superseded: bool = False

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


class EvaluationResult(Lenient):
    """A version's held-out evaluation as the trainer writes it (an Experiment writes its full report)."""

    version: int
    split: Literal["test", "train", "all"]
    samples: int = Field(ge=0)
    accuracy: float | None = Field(None, description="None when the split has no sample to measure on.")


class Baseline(Strict):
    experiment: str
    report: str
    predictions: str


class EvaluationRequest(Strict):
    """Test a published version: its held-out accuracy, or (with `experiment`) an Experiment's full report."""

    namespace: str
    model: str
    uid: str
    version: int = Field(ge=1)
    spec: ShardedModelSpec
    split: Literal["test", "train", "all"] = "test"
    output: str | None = Field(None, description="Where the result goes (default: the model's evals/).")
    datasetRevision: int | None = Field(None, ge=1, description="Test on this revision (default: the version's).")
    experiment: str | None = None
    predictions: str | None = Field(None, description="An Experiment's predictions (a store key).")
    baseline: Baseline | None = None
