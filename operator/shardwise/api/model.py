"""ShardedModel: S shards x R slices trained on a Dataset."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from shardwise.api.common import Figure, Name, Resource, StatusBase, Strict


class ArchitectureSpec(Strict):
    kind: Literal["mlp", "cnn"] = Field(
        "mlp", description="mlp for feature vectors, cnn (a small convolutional net) for images."
    )
    hiddenUnits: list[int] = Field(
        default_factory=lambda: [128],
        max_length=8,
        description="mlp: width of each hidden layer; cnn: width of the dense layer after the convolutions.",
    )

    @model_validator(mode="after")
    def _sane(self) -> ArchitectureSpec:
        if any(not 1 <= h <= 65536 for h in self.hiddenUnits):
            raise ValueError("architecture.hiddenUnits: every width must be between 1 and 65536")
        return self


class TrainingSpec(Strict):
    epochsPerSlice: int = Field(
        10,
        ge=1,
        le=1000,
        description="Passes after each slice is added; a pass is as many samples as the new slice holds, drawn "
        "from all slices so far, so every slice step costs the same and a shard costs epochsPerSlice epochs.",
    )
    batchSize: int = Field(32, ge=1, le=65536)
    learningRate: float = Field(1e-3, gt=0, le=10)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only.")
    weightDecay: float = Field(0.0, ge=0, le=1)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Base seed; each shard and slice derives its own.")


class ResourcesSpec(Strict):
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per training Job (Kubernetes only).")
    cpu: str = Field("1", max_length=32, description="CPU request per training Job.")
    memory: str = Field("2Gi", max_length=32, description="Memory request and limit per training Job.")
    nodeSelector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=64, description="Node labels a training pod must match (values: 63 "
        "characters at most, as for any label).")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=32)
    priorityClassName: str | None = Field(None, max_length=253)
    retrainPriorityClassName: str | None = Field(None, max_length=253, description=(
        "PriorityClass of the retrain Jobs a forget or a label fix starts (default: priorityClassName), so that "
        "they get quota before first trainings; Kueue takes a Job's priority from it."))
    queueName: str | None = Field(None, max_length=63, description=(
        "Kueue LocalQueue (kueue.x-k8s.io/queue-name). Jobs are created suspended; Kueue admits them, and until it "
        "does the model (and a ForgetRequest waiting for it) shows WaitingForAdmission."))


class ModelSettings(Strict):
    """Everything of a ShardedModel's spec but its Dataset (an Experiment that trains names that itself)."""

    shards: int = Field(4, ge=1, le=1024, description="S: number of constituent models. Immutable.")
    slices: int = Field(4, ge=1, le=1024, description="R: slices per shard, one checkpoint after each. Immutable.")
    groupBy: Literal["owner", "none"] = Field(
        "owner",
        description="owner: all samples of one owner key go to one shard and one slice, so forgetting a person "
        "retrains one shard from one slice; none: every sample is placed on its own. Immutable.",
    )
    architecture: ArchitectureSpec = Field(default_factory=ArchitectureSpec, description=(
        "The network of each constituent model. Immutable: the checkpoints were made with it."))
    training: TrainingSpec = Field(default_factory=TrainingSpec, description=(
        "How each slice is trained. Immutable: to try other settings, train another ShardedModel "
        "(or an Experiment with spec.train)."))
    aggregation: Literal["softmax-mean", "vote"] = Field(
        "softmax-mean", description="How the shards' outputs are combined: mean of softmax, or majority vote."
    )
    maxParallelShards: int = Field(4, ge=1, le=1024, description="Shards of this model trained at once.")
    storagePolicy: Literal["Retain", "Delete"] = Field(
        "Retain", description="Delete: remove checkpoints and versions from the store when the model is deleted."
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)


class ShardedModelSpec(ModelSettings):
    datasetRef: Name = Field(description="Name of a Dataset in the same namespace. Immutable once trained.")


class ShardedModelStatus(StatusBase):
    publishedVersion: int | None = Field(None, description="The model version served now.")
    datasetRevision: int | None = Field(None, description="Dataset revision of the published version.")
    shards: int | None = None
    shardsReady: int | None = Field(None, description="Shards whose chain matches the current dataset revision.")
    shardsReadyText: str | None = Field(None, description="shardsReady/shards, for kubectl get.")
    accuracy: Figure | None = Field(None, description="Accuracy of the published version on the held-out split.")
    purgedRevision: int | None = Field(None, description="Highest dataset revision whose forgotten samples are purged.")
    accuracyVersion: int | None = Field(None, description="The version `accuracy` was measured on.")
    placement: dict[str, Any] | None = Field(None, description=(
        "Where hash placement put the active training samples: shardSamples (per shard), sliceMin and sliceMax "
        "(the smallest and largest slice), emptyShards (they do not vote)."))
    retraining: list[dict[str, int]] = Field(default_factory=list, description=(
        "Shards in work or waiting: shard, fromSlice, slicesDone (from the trainer's progress in the store)."))


class ShardedModel(Resource[ShardedModelSpec, ShardedModelStatus]):
    KIND: ClassVar[str] = "ShardedModel"
    PLURAL: ClassVar[str] = "shardedmodels"
    SHORT_NAMES: ClassVar[list[str]] = ["swm"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", "Pending, Training, Ready, Retraining, WaitingForAdmission or Failed"),
        ("Version", "integer", ".status.publishedVersion", "published model version"),
        ("Shards", "string", ".status.shardsReadyText", "shards ready / shards"),
        ("Accuracy", "number", ".status.accuracy", "held-out accuracy of the published version"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
