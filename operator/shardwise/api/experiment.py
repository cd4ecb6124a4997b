"""Experiment: a test run of a model version on a dataset split, with a diagnosis report.

The status carries the headline figures; the full report (metrics per class, confusion,
calibration, per-shard figures, hardest samples, label-issue candidates) is in the store at
`status.reportKey`, next to the predictions it was computed from.
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
    modelVersion: int | None = Field(None, ge=1, description="The model version tested.")
    accuracy: float | None = Field(None, description="Ensemble accuracy on the split.")
    macroF1: float | None = Field(None, description="Mean F1 over the classes present in the split.")
    calibrationError: float | None = Field(
        None, description="Expected calibration error of the ensemble on the split (15 equal-width confidence bins).")
    labelIssues: int | None = Field(
        None, ge=0, description="Samples flagged as possibly mislabeled (out-of-shard probabilities, all active samples).")
    accuracyDelta: float | None = Field(
        None, description="Accuracy minus the baseline Experiment's (spec.baselineRef), on the same split.")
    reportKey: str | None = Field(None, description="Store key of the full report.")


class Experiment(Resource[ExperimentSpec, ExperimentStatus]):
    KIND: ClassVar[str] = "Experiment"
    PLURAL: ClassVar[str] = "experiments"
    SHORT_NAMES: ClassVar[list[str]] = ["swx"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", ""),
        ("Model", "string", ".spec.modelRef", ""),
        ("Version", "integer", ".status.modelVersion", ""),
        ("Accuracy", "number", ".status.accuracy", ""),
        ("MacroF1", "number", ".status.macroF1", ""),
        ("Issues", "integer", ".status.labelIssues", ""),
        ("VsBaseline", "number", ".status.accuracyDelta", ""),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
