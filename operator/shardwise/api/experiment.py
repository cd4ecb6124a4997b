"""Experiment: a test run of a model version on a dataset split, with a diagnosis report.

The status carries the headline figures; the full report (metrics per class, confusion,
calibration, per-shard figures, hardest samples, label-issue candidates) is in the store at
`status.reportKey`, next to the predictions it was computed from.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shardwise.api.common import Figure, Name, Resource, StatusBase, Strict, cel_rules
from shardwise.api.model import ModelSettings

EXPERIMENT_LABEL = "shardwise.io/experiment"  # on the ShardedModel an Experiment trains


ONE_MODEL = "spec.modelRef, spec.train: give exactly one (a model to test, or one to train)"


class ExperimentSpec(Strict):
    model_config = cel_rules(("has(self.modelRef) != has(self.train)", ONE_MODEL))

    modelRef: Name | None = Field(None, description="ShardedModel in the same namespace to test (or give `train`).")
    train: ModelSettings | None = Field(
        None, description="Train a new ShardedModel for this Experiment instead of naming one: the settings of its "
        "spec (the Dataset is datasetRef). It is named like the Experiment, owned by it, and deleted with it. "
        "Immutable.")
    modelVersion: int | None = Field(None, ge=1, description="Model version to test; the published one when left out.")
    datasetRef: Name = Field(description="Dataset to test on.")
    datasetRevision: int | None = Field(
        None, ge=1, description="Dataset revision whose samples and labels are tested; the revision the model version "
        "was trained on when left out. A later one tests on corrected labels, without samples dropped since.")
    split: Literal["test", "train", "all"] = "test"
    baselineRef: Name | None = Field(None, description="Another Experiment to compare with.")

    @model_validator(mode="after")
    def _one_model(self) -> ExperimentSpec:
        if (self.modelRef is None) == (self.train is None):
            raise ValueError(ONE_MODEL)
        return self

    def model_name(self, experiment: str) -> str:
        """The ShardedModel tested: modelRef, or the one trained for this Experiment (its own name)."""
        return self.modelRef or experiment


class ExperimentStatus(StatusBase):
    model: str | None = Field(None, description="The ShardedModel tested (spec.modelRef, or the one it trains).")
    modelVersion: int | None = Field(None, ge=1, description="The model version tested.")
    accuracy: Figure | None = Field(None, description="Ensemble accuracy on the split.")
    macroF1: Figure | None = Field(None, description="Mean F1 over the classes present in the split.")
    calibrationError: Figure | None = Field(
        None, description="Expected calibration error of the ensemble on the split (15 equal-width confidence bins).")
    labelIssues: int | None = Field(
        None, ge=0,
        description="Samples flagged as possibly mislabeled (out-of-shard probabilities, all active samples).")
    accuracyDelta: Figure | None = Field(
        None, description="Accuracy minus the baseline Experiment's (spec.baselineRef), on the same split.")
    reportKey: str | None = Field(None, description="Store key of the full report.")


class Experiment(Resource[ExperimentSpec, ExperimentStatus]):
    KIND: ClassVar[str] = "Experiment"
    PLURAL: ClassVar[str] = "experiments"
    SHORT_NAMES: ClassVar[list[str]] = ["swx"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", ""),
        ("Model", "string", ".status.model", ""),
        ("Version", "integer", ".status.modelVersion", ""),
        ("Accuracy", "number", ".status.accuracy", ""),
        ("MacroF1", "number", ".status.macroF1", ""),
        ("Issues", "integer", ".status.labelIssues", ""),
        ("VsBaseline", "number", ".status.accuracyDelta", ""),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
