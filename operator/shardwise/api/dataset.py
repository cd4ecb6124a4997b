"""Dataset: a versioned list of samples in object storage."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from shardwise.api.common import Resource, StatusBase, Strict, cel_rules

ONE_SOURCE = "set exactly one of source.builtin or source.uri"


class DatasetSource(Strict):
    """Where the samples come from: exactly one of builtin or uri."""

    model_config = cel_rules(("has(self.builtin) != has(self.uri)", ONE_SOURCE))

    builtin: Literal["digits"] | None = Field(
        None, description="A dataset shipped with a Python package: 'digits' (scikit-learn, 1,797 8x8 images)."
    )
    uri: str | None = Field(
        None,
        max_length=2048,
        description="A local path or s3://bucket/key of a CSV or JSONL file, or of a folder of PNG/JPEG images.",
    )
    format: Literal["csv", "jsonl", "images"] | None = Field(
        None, description="File format; inferred from the uri's extension (a folder means images) when left out."
    )
    idColumn: str = Field("id", max_length=128, description="Column holding the unique sample id.")
    labelColumn: str = Field("label", max_length=128, description="Column holding the class label.")
    ownerColumn: str = Field(
        "owner", max_length=128, description="Optional column holding the data subject's key (used by forget --owner)."
    )
    featuresColumn: str = Field(
        "features", max_length=128, description="JSONL only: the key holding the feature list."
    )
    labelsFile: str = Field(
        "labels.csv", max_length=256,
        description="Images only: CSV inside the folder with columns file,label[,owner][,id]."
    )
    imageSize: int = Field(28, ge=4, le=256, description="Images only: images are resized to imageSize x imageSize.")
    ownersPerSample: int = Field(
        0,
        ge=0,
        le=10_000,
        description="Builtin only: give every run of this many consecutive samples one synthetic owner key "
        "(0 = no owners). Lets a demo forget 'every sample of one person'.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetSource:
        if (self.builtin is None) == (self.uri is None):
            raise ValueError(ONE_SOURCE)
        return self


class DatasetSpec(Strict):
    source: DatasetSource
    testFraction: float = Field(
        0.2, ge=0.0, le=0.9,
        description="Share of samples held out for evaluation, chosen by a seeded hash of the id. Immutable."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description=(
        "Seed of the train/test split and of the samples' placement words (a keyed hash of each sample's "
        "own id and owner key). Immutable."))
    classes: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, min_length=1, max_length=10_000, json_schema_extra={"x-kubernetes-list-type": "set"}, description=(
            "The class labels, in the order of the models' outputs. Left out: the distinct labels of the first "
            "ingest, recorded then and kept for the life of the Dataset (a forget that removes the last sample "
            "of a class keeps the class). Immutable."))

    @model_validator(mode="after")
    def _distinct_classes(self) -> DatasetSpec:
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            dup = next(c for c in self.classes if self.classes.count(c) > 1)
            raise ValueError(f"spec.classes: {dup!r} is listed twice")
        return self


class DatasetStatus(StatusBase):
    revision: int | None = Field(None, description="The current revision; every forget or label fix adds one.")
    samples: int | None = None
    activeSamples: int | None = None
    tombstoned: int | None = None
    classes: int | None = None
    skippedForgotten: int | None = Field(None, description=(
        "Rows of the source left out at the last ingest because an earlier revision forgot them."))


class Dataset(Resource[DatasetSpec, DatasetStatus]):
    KIND: ClassVar[str] = "Dataset"
    PLURAL: ClassVar[str] = "datasets"
    SHORT_NAMES: ClassVar[list[str]] = ["swds"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", "Pending, Ready or Failed"),
        ("Revision", "integer", ".status.revision", "current revision"),
        ("Samples", "integer", ".status.activeSamples", "samples not forgotten"),
        ("Forgotten", "integer", ".status.tombstoned", "tombstoned samples"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
