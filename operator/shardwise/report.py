"""`shardwise report EXPERIMENT`: an Experiment's stored diagnosis as one HTML file and its JSON.

The evaluation wrote report.json and predictions.npz; this reads them back with the Dataset
revision they were made on (for the thumbnails), with the comparison with spec.baselineRef the
evaluation stored. Nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shardwise.api import Experiment
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.diagnosis.predictions import Predictions
from shardwise.errors import NotFound
from shardwise.local.registry import Registry, Resources
from shardwise.store.base import Store
from shardwise.store.layout import Layout


@dataclass
class ReportInputs:
    report: dict[str, Any]
    preds: Predictions | None
    table: SampleTable | None
    comparison: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The JSON written beside the page: the report with its comparison filled in."""
        return {**self.report, "comparison": self.comparison}


def _not_run(exp: Experiment) -> str:
    st = exp.status
    phase = st.phase if st and st.phase else "Pending"
    why = next((c.message for c in (st.conditions if st else []) if c.type == "Ready" and c.message), "")
    hint = ("it has never been reconciled" if st is None else why)
    return (f"Experiment {exp.metadata.namespace}/{exp.name} has no report: it is {phase}, not Succeeded"
            + (f" ({hint})" if hint else "")
            + ". The local body runs Experiments in `shardwise apply` and `shardwise reconcile`.")


def _predictions(store: Store, key: str) -> Predictions | None:
    try:
        return Predictions.from_npz(store.get_verified(key))
    except NotFound:
        return None


def _table(store: Store, L: Layout, report: dict[str, Any], warnings: list[str]) -> SampleTable | None:
    """The samples of the Dataset revision the report was made on (for thumbnails)."""
    if not (report.get("dataset") and report.get("datasetRevision")):
        return None
    try:
        return DatasetStore(store, L).view(report["dataset"], int(report["datasetRevision"])).table
    except NotFound as e:
        warnings.append(f"Dataset {report['dataset']} revision {report['datasetRevision']}: {e}; no sample thumbnails")
        return None


def load_report(store: Store, namespace: str, name: str, resources: Resources | None = None) -> ReportInputs:
    """Everything the page needs; raises NotFound (naming the Experiment and its phase) before it ran.
    resources: where the Experiment is looked up (the store's registry, or a cluster's API server)."""
    L = Layout(namespace)
    exp = (resources or Registry(store, namespace)).get(Experiment, name)
    notes: list[str] = []
    if exp is None:  # a store the operator writes holds reports but not the cluster's resources
        key, missing = L.experiment_report(name), f"Experiment {namespace}/{name} not found"
    elif exp.status is None or exp.status.phase != "Succeeded":
        raise NotFound(_not_run(exp))
    else:
        key = exp.status.reportKey or L.experiment_report(name)
        missing = f"Experiment {namespace}/{name} is Succeeded but its report {key} is not in the store {store.uri}"
    try:
        report = store.get_json(key)
    except NotFound:
        raise NotFound(missing) from None
    if exp is None:
        notes.append(f"Experiment {namespace}/{name} is not a resource of this store (deleted, or a cluster's): "
                     "showing its stored report as it is")
    preds = _predictions(store, report.get("predictionsKey") or L.experiment_predictions(name))
    comparison = report.get("comparison")  # made by the evaluation Job
    if comparison and "error" in comparison:
        notes.append(f"the evaluation could not compare with {comparison.get('baseline')}: {comparison['error']}")
        comparison = None
    return ReportInputs(report, preds, _table(store, L, report, notes), comparison, notes)


def render(inputs: ReportInputs) -> str:
    from shardwise.diagnosis.html import render_html

    return render_html(inputs.document(), inputs.preds, inputs.table, inputs.comparison)
