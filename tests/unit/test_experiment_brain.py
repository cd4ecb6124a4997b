"""The Experiment's decisions (pure)."""

from shardwise.api.experiment import ExperimentSpec
from shardwise.brain.experiment import RunEvaluation, reconcile_experiment

SPEC = ExperimentSpec(modelRef="m", datasetRef="d")


def test_waits_for_the_model_then_runs_once_then_reports():
    acts, st = reconcile_experiment(SPEC, None, 1, None, None, None, "k")
    assert acts == [] and st.phase == "Pending" and st.condition("Ready").reason == "ModelNotFound"
    acts, st = reconcile_experiment(SPEC, st, 1, None, "d", None, "k")
    assert acts == [] and st.condition("Ready").reason == "ModelNotPublished"
    acts, st = reconcile_experiment(SPEC, st, 1, 3, "d", None, "k")
    assert acts == [RunEvaluation(3, "k")] and st.phase == "Running"
    acts, st = reconcile_experiment(SPEC, st, 1, 3, "d", {"version": 3, "accuracy": 0.9}, "k")
    assert acts == [] and st.phase == "Succeeded" and st.accuracy == 0.9 and st.reportKey == "k"
    # a newer published version is tested again; a pinned version is not
    acts, _ = reconcile_experiment(SPEC, st, 1, 4, "d", {"version": 3, "accuracy": 0.9}, "k")
    assert acts == [RunEvaluation(4, "k")]
    pinned = SPEC.model_copy(update={"modelVersion": 3})
    assert reconcile_experiment(pinned, st, 1, 4, "d", {"version": 3, "accuracy": 0.9}, "k")[0] == []


def test_another_dataset_is_refused_naming_the_field():
    acts, st = reconcile_experiment(SPEC, None, 1, 1, "other", None, "k")
    assert acts == [] and st.phase == "Failed" and "spec.datasetRef" in st.condition("Ready").message
