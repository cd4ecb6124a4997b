"""Reconcile an Experiment: a test run of a model version on a dataset split. Pure.

The evaluation Job writes the report (shardwise_trainer/evaluate.py, computed by
shardwise.diagnosis); the status takes its headline figures from it. With a baseline, the
Job compares against the baseline's stored report, so the Experiment waits for that report
and runs again when the baseline is re-tested on another version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shardwise.api import Experiment, ShardedModel
from shardwise.api.experiment import EXPERIMENT_LABEL, ExperimentSpec, ExperimentStatus


@dataclass(frozen=True)
class ExperimentObservation:
    """What the reconciler read for one Experiment."""

    model_dataset: str | None = None  # the Dataset of the model tested; None: no such ShardedModel
    model_owner: str | None = None  # its shardwise.io/experiment label: the Experiment that trains it
    published: int | None = None
    stored_versions: frozenset[int] = field(default_factory=frozenset)  # version manifests in the store
    report: dict[str, Any] | None = None  # this Experiment's stored report
    baseline: dict[str, Any] | None = None  # the baseline Experiment's stored report
    dataset_revision: int | None = None  # the Dataset's current revision
    model_uid: str | None = None  # the model's metadata.uid: a report of a same-named earlier model is not its own


@dataclass(frozen=True)
class RunEvaluation:
    model_version: int
    report_key: str


@dataclass(frozen=True)
class CreateModel:
    """Create the ShardedModel a `spec.train` Experiment trains (see build_experiment_model)."""

    name: str


def experiment_job_name(experiment: str, version: int) -> str:
    """An Experiment's test run of a version (a Job name: 63 characters at most)."""
    suffix = f"-x-v{version}"
    return experiment[: 63 - len(suffix)] + suffix


def build_experiment_model(exp: Experiment) -> ShardedModel:
    """The ShardedModel of an Experiment with spec.train: its name, labelled as the Experiment's. Pure.

    The kube body adds an ownerReference (deleting the Experiment deletes it); the local
    registry deletes it with the Experiment."""
    assert exp.spec.train is not None
    return ShardedModel.model_validate({
        "kind": "ShardedModel",
        "metadata": {"name": exp.name, "namespace": exp.namespace, "labels": {EXPERIMENT_LABEL: exp.name}},
        "spec": {"datasetRef": exp.spec.datasetRef, **exp.spec.train.model_dump(mode="json")},
    })


def _answers(report: dict[str, Any], spec: ExperimentSpec, model: str, version: int, uid: str | None) -> bool:
    """Whether a stored report is this spec's test run: the same model (name, and uid where both
    know it), version, split and Dataset revision (the pinned one, else the version's own). Any
    other report is run again."""
    revision = spec.datasetRevision or report.get("modelRevision")
    same_model = uid is None or report.get("modelUid") in (None, uid)
    return (report.get("model"), report.get("version"), report.get("split"), report.get("datasetRevision")) == (
        model, version, spec.split, revision) and revision is not None and same_model


def _compared_with(report: dict[str, Any]) -> tuple[str | None, int | None]:
    c = report.get("comparison") or {}
    return c.get("baseline"), c.get("baselineVersion")


def reconcile_experiment(name: str, spec: ExperimentSpec, status: ExperimentStatus | None, generation: int | None,
                         obs: ExperimentObservation, report_key: str
                         ) -> tuple[list[RunEvaluation | CreateModel], ExperimentStatus]:
    st = (status or ExperimentStatus()).model_copy(deep=True)
    st.observedGeneration = generation

    def stop(phase: str, reason: str, message: str) -> tuple[list[RunEvaluation | CreateModel], ExperimentStatus]:
        st.phase = phase
        st.set_condition("Ready", "False", reason, message)
        return [], st

    if spec.baselineRef == name:
        return stop("Failed", "InvalidSpec", "spec.baselineRef: an Experiment cannot be its own baseline")
    model = spec.model_name(name)
    st.model = model
    if spec.train is not None:
        if obs.model_dataset is None:
            st.phase = "Pending"
            st.set_condition("Ready", "False", "TrainingModel", f"creating ShardedModel {model!r} to train")
            return [CreateModel(model)], st
        if obs.model_owner != name:
            return stop("Failed", "InvalidSpec", f"spec.train: ShardedModel {model!r} already exists and is not "
                                                 "this Experiment's; rename the Experiment or use spec.modelRef")
    if obs.model_dataset is None:
        return stop("Pending", "ModelNotFound", f"no ShardedModel {model!r} in this namespace")
    if obs.model_dataset != spec.datasetRef:
        return stop("Failed", "InvalidSpec",
                    f"spec.datasetRef: model {model!r} is trained on {obs.model_dataset!r}, not "
                    f"{spec.datasetRef!r} (testing on another dataset is not built yet)")
    version = spec.modelVersion or obs.published
    if version is None:
        return stop("Pending", "ModelNotPublished", f"waiting for {model!r} to publish a version"
                    + (" (training it)" if spec.train is not None else ""))
    wanted = spec.datasetRevision
    if wanted is not None and (obs.dataset_revision or 0) < wanted:
        return stop("Pending", "RevisionNotFound", f"spec.datasetRevision: waiting for Dataset {spec.datasetRef!r} "
                                                   f"to reach revision {wanted} (now {obs.dataset_revision or 'none'})")
    report = obs.report if obs.report and _answers(obs.report, spec, model, version, obs.model_uid) else None
    base = obs.baseline
    stale = report is not None and (base is not None or spec.baselineRef is None) and \
        _compared_with(report) != (spec.baselineRef, base.get("version") if base else None)
    if report is None or stale:
        if version not in obs.stored_versions:
            if obs.published is None or version > obs.published:
                return stop("Pending", "ModelNotPublished",
                            f"spec.modelVersion: waiting for {model!r} to publish version {version} "
                            f"(published: {obs.published or 'none'})")
            return stop("Failed", "VersionNotFound",
                        f"spec.modelVersion: version {version} of {model!r} is no longer in the store "
                        "(purged: it held forgotten or dropped samples); test a newer version")
        if spec.baselineRef and base is None:
            return stop("Pending", "BaselineNotReady",
                        f"spec.baselineRef: waiting for Experiment {spec.baselineRef!r} to have a report")
        st.phase = "Running"
        st.modelVersion = version
        st.set_condition("Ready", "False", "Evaluating", f"testing version {version} on the {spec.split} split"
                         + (f", against {spec.baselineRef}" if spec.baselineRef else ""))
        return [RunEvaluation(version, report_key)], st
    st.phase = "Succeeded"
    st.modelVersion = version
    st.accuracy = report.get("accuracy")
    metrics = report.get("metrics") or {}  # None for an empty split (or a report without a diagnosis)
    st.macroF1, st.calibrationError = metrics.get("macroF1"), metrics.get("calibrationError")
    issues = report.get("labelIssues")
    st.labelIssues = int(issues["flagged"]) if issues else None
    deltas = (report.get("comparison") or {}).get("deltas") or {}
    st.accuracyDelta = deltas.get("accuracy")
    st.reportKey = report_key
    st.set_condition("Ready", "True", "Evaluated", _summary(version, st, report.get("comparison")))
    return [], st


def _summary(version: int, st: ExperimentStatus, comparison: dict[str, Any] | None) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    out = f"version {version}: accuracy {fmt(st.accuracy)}"
    if st.macroF1 is not None:
        out += f", macro F1 {fmt(st.macroF1)}, calibration error {fmt(st.calibrationError)}"
    if st.labelIssues is not None:
        out += f", {st.labelIssues} possible label issue(s)"
    if comparison and st.accuracyDelta is not None:
        out += (f"; accuracy {st.accuracyDelta:+.4f} against {comparison.get('baseline')} "
                f"(version {comparison.get('baselineVersion')})")
    return out
