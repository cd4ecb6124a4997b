"""Reconcile an Experiment: a test run of a model version on a dataset split. Pure.

Only the headline run is built so far (accuracy on the split); the diagnosis report,
baseline comparison and annotation loop are the Experiments issue's work.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardwise.api.experiment import ExperimentSpec, ExperimentStatus


@dataclass(frozen=True)
class RunEvaluation:
    model_version: int
    report_key: str


def reconcile_experiment(spec: ExperimentSpec, status: ExperimentStatus | None, generation: int | None,
                         published_version: int | None, model_dataset: str | None,
                         report: dict | None, report_key: str) -> tuple[list[RunEvaluation], ExperimentStatus]:
    st = (status or ExperimentStatus()).model_copy(deep=True)
    st.observedGeneration = generation
    if model_dataset is None:
        st.phase = "Pending"
        st.set_condition("Ready", "False", "ModelNotFound", f"no ShardedModel {spec.modelRef!r} in this namespace")
        return [], st
    if model_dataset != spec.datasetRef:
        st.phase = "Failed"
        st.set_condition("Ready", "False", "InvalidSpec",
                         f"spec.datasetRef: model {spec.modelRef!r} is trained on {model_dataset!r}, not "
                         f"{spec.datasetRef!r} (testing on another dataset is not built yet)")
        return [], st
    version = spec.modelVersion or published_version
    if version is None:
        st.phase = "Pending"
        st.set_condition("Ready", "False", "ModelNotPublished", f"waiting for {spec.modelRef!r} to publish a version")
        return [], st
    if report is None or report.get("version") != version:
        st.phase = "Running"
        st.set_condition("Ready", "False", "Evaluating", f"testing version {version} on the {spec.split} split")
        return [RunEvaluation(version, report_key)], st
    st.phase = "Succeeded"
    st.accuracy = report.get("accuracy")
    st.reportKey = report_key
    st.set_condition("Ready", "True", "Evaluated", f"version {version}: accuracy {st.accuracy}")
    return [], st
