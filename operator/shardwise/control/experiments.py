"""Experiments: what the brain decides one from, and the evaluation request that runs it."""

from __future__ import annotations

from shardwise.api import Experiment, ShardedModel
from shardwise.api.experiment import EXPERIMENT_LABEL
from shardwise.api.jobs import Baseline, EvaluationRequest
from shardwise.brain.experiment import ExperimentObservation
from shardwise.control.base import _uid
from shardwise.control.models import ModelControl
from shardwise.errors import NotFound


class ExperimentControl(ModelControl):
    """Experiments."""

    # -- experiments -----------------------------------------------------------------------
    def experiment_inputs(self, exp: Experiment, models: list[ShardedModel]) -> ExperimentObservation:
        """What the brain decides an Experiment from: its model, the stored versions and reports."""
        model = next((m for m in models if m.name == exp.spec.model_name(exp.name)), None)
        if model is None:
            return ExperimentObservation()
        pub = self.published(model)
        versions = frozenset(self._version_numbers(model.name, _uid(model)))
        ds = model.spec.datasetRef
        return ExperimentObservation(ds, model.metadata.labels.get(EXPERIMENT_LABEL),
                                     pub.version if pub else None, versions, self._report(exp.name),
                                     self._report(exp.spec.baselineRef) if exp.spec.baselineRef else None,
                                     self.datasets.current_revision(ds) if self.datasets.exists(ds) else None,
                                     _uid(model))

    def _report(self, experiment: str) -> dict | None:
        try:
            return self.store.get_json(self.layout.experiment_report(experiment))
        except NotFound:
            return None

    def write_experiment_request(self, exp: Experiment, model: ShardedModel, version: int) -> str:
        key, L = self.layout.experiment_request(exp.name), self.layout
        base = exp.spec.baselineRef
        request = EvaluationRequest(
            namespace=self.namespace, model=model.name, uid=_uid(model), version=version, spec=model.spec,
            split=exp.spec.split, output=L.experiment_report(exp.name), datasetRevision=exp.spec.datasetRevision,
            experiment=exp.name, predictions=L.experiment_predictions(exp.name),
            baseline=Baseline(experiment=base, report=L.experiment_report(base),
                              predictions=L.experiment_predictions(base)) if base else None)
        self.store.put_json(key, request.model_dump(mode="json"))
        self.log(f"experiment/{exp.name}: testing {model.name} version {version} on the {exp.spec.split} split")
        return key
