"""The Experiment's decisions (pure)."""

import pytest
from pydantic import ValidationError

from shardwise.api import Experiment
from shardwise.api.experiment import EXPERIMENT_LABEL, ExperimentSpec
from shardwise.brain.experiment import (
    CreateModel,
    ExperimentObservation,
    RunEvaluation,
    build_experiment_model,
    reconcile_experiment,
)

SPEC = ExperimentSpec(modelRef="m", datasetRef="d")
VERSIONS = frozenset({1, 2, 3, 4})


def obs(published: int | None = 3, report: dict | None = None, baseline: dict | None = None,
        dataset: str | None = "d", versions: frozenset[int] = VERSIONS, owner: str | None = None
        ) -> ExperimentObservation:
    return ExperimentObservation(model_dataset=dataset, model_owner=owner, published=published,
                                 stored_versions=versions, report=report, baseline=baseline)


def run(spec: ExperimentSpec, o: ExperimentObservation, status=None, name: str = "x"):
    return reconcile_experiment(name, spec, status, 1, o, "k")


def report(version: int = 3, **extra) -> dict:
    """A stored report of model m's `version`, tested on the test split of its own revision (1)."""
    return {"model": "m", "version": version, "split": "test",
            "datasetRevision": 1, "modelRevision": 1, "accuracy": 0.9,
            "metrics": {"accuracy": 0.9, "macroF1": 0.88, "calibrationError": 0.031},
            "labelIssues": {"method": "m", "flagged": 17, "candidates": []}, **extra}


def test_waits_for_the_model_then_runs_once_then_reports():
    acts, st = run(SPEC, obs(dataset=None))
    assert acts == [] and st.phase == "Pending" and st.condition("Ready").reason == "ModelNotFound"
    acts, st = run(SPEC, obs(published=None), st)
    assert acts == [] and st.condition("Ready").reason == "ModelNotPublished"
    acts, st = run(SPEC, obs(), st)
    assert acts == [RunEvaluation(3, "k")] and st.phase == "Running"
    acts, st = run(SPEC, obs(report=report(3, metrics=None, labelIssues=None)), st)
    assert acts == [] and st.phase == "Succeeded" and st.accuracy == 0.9 and st.reportKey == "k"
    # a newer published version is tested again; a pinned version is not
    acts, _ = run(SPEC, obs(published=4, report=report(3, metrics=None, labelIssues=None)), st)
    assert acts == [RunEvaluation(4, "k")]
    pinned = SPEC.model_copy(update={"modelVersion": 3})
    assert run(pinned, obs(published=4, report=report(3, metrics=None, labelIssues=None)), st)[0] == []


def test_another_dataset_is_refused_naming_the_field():
    acts, st = run(SPEC, obs(dataset="other"))
    assert acts == [] and st.phase == "Failed" and "spec.datasetRef" in st.condition("Ready").message


def test_a_pinned_version_not_yet_published_is_waited_for():
    pinned = SPEC.model_copy(update={"modelVersion": 5})
    acts, st = run(pinned, obs(published=4))
    assert acts == [] and st.phase == "Pending" and st.condition("Ready").reason == "ModelNotPublished"
    assert "spec.modelVersion" in st.condition("Ready").message and "version 5" in st.condition("Ready").message
    acts, st = run(pinned, obs(published=5, versions=VERSIONS | {5}), st)
    assert acts == [RunEvaluation(5, "k")]


def test_a_pinned_version_that_was_purged_fails_naming_the_field_but_keeps_an_earlier_report():
    pinned = SPEC.model_copy(update={"modelVersion": 2})
    acts, st = run(pinned, obs(published=4, versions=frozenset({4})))
    assert acts == [] and st.phase == "Failed" and st.condition("Ready").reason == "VersionNotFound"
    assert "spec.modelVersion" in st.condition("Ready").message and "purged" in st.condition("Ready").message
    # tested before the purge: the (redacted) report stands
    acts, st = run(pinned, obs(published=4, versions=frozenset({4}), report=report(2)))
    assert acts == [] and st.phase == "Succeeded" and st.modelVersion == 2


def test_the_status_carries_the_headline_figures_of_the_report():
    acts, st = run(SPEC, obs())
    assert st.phase == "Running" and st.modelVersion == 3
    acts, st = run(SPEC, obs(report=report()), st)
    assert acts == [] and st.phase == "Succeeded"
    assert (st.modelVersion, st.accuracy, st.macroF1, st.calibrationError, st.labelIssues) == (3, 0.9, 0.88, 0.031, 17)
    msg = st.condition("Ready").message
    assert "version 3" in msg and "macro F1 0.8800" in msg and "17 possible label issue(s)" in msg
    assert st.accuracyDelta is None and "against" not in msg
    # a newer version is being tested: the status names it while the old figures wait for the new report
    acts, st = run(SPEC, obs(published=4, report=report()), st)
    assert acts == [RunEvaluation(4, "k")] and st.phase == "Running" and st.modelVersion == 4


def test_an_empty_split_or_a_report_without_a_diagnosis_leaves_the_figures_empty():
    _, st = run(SPEC, obs(report=report(accuracy=None, metrics=None)))
    assert st.phase == "Succeeded" and st.accuracy is None and st.macroF1 is None and st.calibrationError is None
    assert st.labelIssues == 17 and "accuracy n/a" in st.condition("Ready").message
    _, st = run(SPEC, obs(report=report(3, accuracy=0.5, metrics=None, labelIssues=None)))
    assert st.phase == "Succeeded" and st.accuracy == 0.5 and st.macroF1 is None and st.labelIssues is None


AFTER = SPEC.model_copy(update={"baselineRef": "before"})


def compared(baseline_version: int, delta: float = 0.02) -> dict:
    return {"baseline": "before", "baselineVersion": baseline_version, "deltas": {"accuracy": delta}}


def test_a_baseline_is_waited_for_then_compared_and_its_delta_shown():
    acts, st = run(AFTER, obs(), name="after")
    assert acts == [] and st.phase == "Pending" and st.condition("Ready").reason == "BaselineNotReady"
    assert "spec.baselineRef" in st.condition("Ready").message
    acts, st = run(AFTER, obs(baseline=report(1)), st, name="after")
    assert acts == [RunEvaluation(3, "k")] and "against before" in st.condition("Ready").message
    acts, st = run(AFTER, obs(baseline=report(1), report=report(comparison=compared(1))), st, name="after")
    assert acts == [] and st.phase == "Succeeded" and st.accuracyDelta == 0.02
    assert "accuracy +0.0200 against before (version 1)" in st.condition("Ready").message
    # the baseline was re-tested on another version: compare again
    acts, _ = run(AFTER, obs(baseline=report(2), report=report(comparison=compared(1))), st, name="after")
    assert acts == [RunEvaluation(3, "k")]
    # the baseline's report is gone (deleted with it): the comparison made stands
    acts, st = run(AFTER, obs(baseline=None, report=report(comparison=compared(1))), st, name="after")
    assert acts == [] and st.phase == "Succeeded" and st.accuracyDelta == 0.02


def test_an_experiment_cannot_be_its_own_baseline():
    acts, st = run(AFTER, obs(), name="before")
    assert acts == [] and st.phase == "Failed" and "spec.baselineRef" in st.condition("Ready").message


TRAINS = ExperimentSpec(datasetRef="d", train={"shards": 2, "slices": 3})


def test_an_experiment_that_trains_creates_its_model_then_tests_it():
    acts, st = run(TRAINS, obs(dataset=None), name="x")
    assert acts == [CreateModel("x")] and st.phase == "Pending" and st.condition("Ready").reason == "TrainingModel"
    assert st.model == "x"
    acts, st = run(TRAINS, obs(published=None, owner="x"), st, name="x")
    assert acts == [] and "(training it)" in st.condition("Ready").message
    acts, st = run(TRAINS, obs(published=1, owner="x"), st, name="x")
    assert acts == [RunEvaluation(1, "k")]


def test_a_model_of_that_name_that_is_not_the_experiments_is_refused():
    acts, st = run(TRAINS, obs(owner=None), name="x")
    assert acts == [] and st.phase == "Failed" and "spec.train" in st.condition("Ready").message


def test_the_trained_model_is_built_from_the_experiment():
    exp = Experiment.model_validate({"kind": "Experiment", "metadata": {"name": "x", "namespace": "team-a"},
                                     "spec": TRAINS.model_dump(mode="json", exclude_none=True)})
    m = build_experiment_model(exp)
    assert (m.name, m.namespace, m.metadata.labels) == ("x", "team-a", {EXPERIMENT_LABEL: "x"})
    assert (m.spec.datasetRef, m.spec.shards, m.spec.slices) == ("d", 2, 3)


@pytest.mark.parametrize("spec", [{"datasetRef": "d"}, {"datasetRef": "d", "modelRef": "m", "train": {}}])
def test_exactly_one_of_model_ref_and_train(spec):
    with pytest.raises(ValidationError, match="spec.modelRef, spec.train: give exactly one"):
        ExperimentSpec.model_validate(spec)


def test_a_dataset_revision_is_waited_for_and_a_report_of_another_revision_is_redone():
    on_rev = SPEC.model_copy(update={"datasetRevision": 5})
    acts, st = run(on_rev, ExperimentObservation(model_dataset="d", published=3, stored_versions=VERSIONS,
                                                 dataset_revision=4))
    assert acts == [] and st.phase == "Pending" and st.condition("Ready").reason == "RevisionNotFound"
    assert "spec.datasetRevision" in st.condition("Ready").message
    base = dict(model_dataset="d", published=3, stored_versions=VERSIONS, dataset_revision=5)
    acts, _ = run(on_rev, ExperimentObservation(**base, report=report(datasetRevision=1)))
    assert acts == [RunEvaluation(3, "k")]  # tested on revision 1: not what is asked
    acts, st = run(on_rev, ExperimentObservation(**base, report=report(datasetRevision=5)))
    assert acts == [] and st.phase == "Succeeded"


@pytest.mark.parametrize("change", [{"split": "train"}, {"modelRef": "m2"}, {"datasetRevision": 1}])
def test_a_report_made_for_another_spec_is_not_taken_for_this_one(change):
    """The spec changed under a stored report (another split, model, or a revision pinned): test again."""
    spec = SPEC.model_copy(update=change)
    o = ExperimentObservation(model_dataset="d", published=3, stored_versions=VERSIONS, dataset_revision=2,
                              report=report(3, datasetRevision=2, modelRevision=2))
    acts, st = run(spec, o)
    assert acts == [RunEvaluation(3, "k")] and st.phase == "Running"
    assert run(SPEC, o)[0] == []  # the spec it was made for takes it


def test_unpinning_a_revision_or_dropping_the_baseline_tests_again():
    pinned_report = report(3, datasetRevision=5, modelRevision=1)
    o = ExperimentObservation(model_dataset="d", published=3, stored_versions=VERSIONS, dataset_revision=5,
                              report=pinned_report)
    assert run(SPEC.model_copy(update={"datasetRevision": 5}), o)[0] == []
    assert run(SPEC, o)[0] == [RunEvaluation(3, "k")]  # no longer pinned: the version's own revision, 1
    compared_report = report(comparison=compared(1))
    assert run(AFTER, obs(baseline=report(1), report=compared_report), name="after")[0] == []
    # spec.baselineRef removed: a report compared with a baseline is not this spec's answer
    assert run(SPEC, obs(report=compared_report), name="after")[0] == [RunEvaluation(3, "k")]


def test_a_report_of_an_earlier_model_of_the_same_name_is_not_taken():
    """The ShardedModel was deleted and created again: its version 3 is another model's version 3."""
    o = lambda uid: ExperimentObservation(model_dataset="d", published=3, stored_versions=VERSIONS,  # noqa: E731
                                          report=report(3, modelUid="u-old"), model_uid=uid)
    assert run(SPEC, o("u-new"))[0] == [RunEvaluation(3, "k")]
    assert run(SPEC, o("u-old"))[0] == []
