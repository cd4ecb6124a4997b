"""Experiment: a test run of a model version on a dataset split.

Only the resource is defined so far; the diagnosis and report are not built yet.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shardwise.api.common import Name, Resource, StatusBase, Strict


class ExperimentSpec(Strict):
    modelRef: Name = Field(description="ShardedModel in the same namespace.")
    modelVersion: int | None = Field(None, ge=1, description="Model version to test; the published one when left out.")
    datasetRef: Name = Field(description="Dataset to test on.")
    split: Literal["test", "train", "all"] = "test"
    baselineRef: Name | None = Field(None, description="Another Experiment to compare with.")


class ExperimentStatus(StatusBase):
    accuracy: float | None = None
    reportKey: str | None = Field(None, description="Store key of the full report.")


class Experiment(Resource[ExperimentSpec, ExperimentStatus]):
    KIND: ClassVar[str] = "Experiment"
    PLURAL: ClassVar[str] = "experiments"
    SHORT_NAMES: ClassVar[list[str]] = ["swx"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", ""),
        ("Model", "string", ".spec.modelRef", ""),
        ("Accuracy", "number", ".status.accuracy", ""),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
