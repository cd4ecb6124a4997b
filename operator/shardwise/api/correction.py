"""Correction: a label fix or a drop of samples, by a named person, as an object of its own.

Locally `shardwise relabel` and the annotation page write a Dataset revision at once. In a cluster
the same edits are Correction objects: the API server admits them (RBAC decides who may create one
in a namespace, and the chart's admission policy checks that `spec.author` is the user making the
request), the operator applies each as one Dataset revision recording its author, and the models
on that Dataset retrain the shards it touches. Both bodies apply Correction objects alike.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from shardwise.api.common import Name, Resource, StatusBase, Strict, cel_rules

ONE_EDIT = "set exactly one of spec.relabel or spec.drop"
SampleId = Annotated[str, Field(min_length=1, max_length=256)]


class LabelFix(Strict):
    id: SampleId = Field(description="The sample id.")
    label: str = Field(min_length=1, max_length=256, description="Its corrected label: a class of the Dataset.")


class CorrectionSpec(Strict):
    model_config = cel_rules(
        ("(has(self.relabel) && size(self.relabel) > 0) != (has(self.drop) && size(self.drop) > 0)", ONE_EDIT))

    datasetRef: Name = Field(description="The Dataset (same namespace) to correct.")
    author: str = Field(min_length=1, max_length=253, description=(
        "Who made the correction. In a cluster it must be the user creating the object (the chart's "
        "ValidatingAdmissionPolicy refuses anything else); the CLI and the page fill it in."))
    relabel: list[LabelFix] = Field(
        default_factory=list, max_length=10_000, description="Label fixes (set this or drop).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]})
    drop: list[SampleId] = Field(
        default_factory=list, max_length=10_000, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Sample ids to take out of training (set this or relabel). A curation step, not a "
                    "forget: the rows stay stored; a ForgetRequest removes them.")

    @model_validator(mode="after")
    def _one_edit(self) -> CorrectionSpec:
        if bool(self.relabel) == bool(self.drop):
            raise ValueError(ONE_EDIT)
        ids = [f.id for f in self.relabel] or self.drop
        dup = next((i for i in ids if ids.count(i) > 1), None) if len(set(ids)) != len(ids) else None
        if dup is not None:
            raise ValueError(f"spec.{'relabel' if self.relabel else 'drop'}: id {dup!r} is listed twice")
        if any("\x00" in i for i in ids):  # see ForgetRequestSpec: numpy strings drop trailing NULs
            raise ValueError("an id must not contain a NUL character")
        return self

    def labels(self) -> dict[str, str]:
        return {f.id: f.label for f in self.relabel}


class CorrectionStatus(StatusBase):
    datasetRevision: int | None = Field(None, description="The Dataset revision that carries this correction.")
    samples: int | None = Field(None, description="Samples relabelled or dropped.")
    appliedAt: str | None = None


class Correction(Resource[CorrectionSpec, CorrectionStatus]):
    KIND: ClassVar[str] = "Correction"
    PLURAL: ClassVar[str] = "corrections"
    SHORT_NAMES: ClassVar[list[str]] = ["swfix"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", "Pending, Applied or Failed"),
        ("Dataset", "string", ".spec.datasetRef", ""),
        ("Author", "string", ".spec.author", "who made it"),
        ("Samples", "integer", ".status.samples", "samples relabelled or dropped"),
        ("Revision", "integer", ".status.datasetRevision", "dataset revision"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
