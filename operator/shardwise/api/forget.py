"""ForgetRequest: remove samples from a Dataset and every model trained on it."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from shardwise.api.common import Name, Resource, StatusBase, Strict, cel_rules

ONE_SELECTOR = "set exactly one of spec.sampleIds or spec.ownerKey"


class ForgetRequestSpec(Strict):
    model_config = cel_rules(("has(self.ownerKey) != (has(self.sampleIds) && size(self.sampleIds) > 0)",
                              ONE_SELECTOR))

    datasetRef: Name = Field(description="The Dataset (same namespace) to forget samples from.")
    sampleIds: list[str] = Field(
        default_factory=list, max_length=100_000, description="Sample ids to forget (set this or ownerKey).",
        # the bound the validator below enforces, also in the CRD: it keeps the CEL immutability rule's
        # estimated cost within the API server's budget (an unbounded string is costed at megabytes)
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 256}},
    )
    ownerKey: str | None = Field(
        None, min_length=1, max_length=256, description="Forget every sample of this owner key."
    )
    deadlineDays: int = Field(
        30, ge=1, le=3650,
        description="Days from creation within which it must complete. Immutable, like the rest of the spec."
    )

    @model_validator(mode="after")
    def _one_selector(self) -> ForgetRequestSpec:
        if bool(self.sampleIds) == (self.ownerKey is not None):
            raise ValueError(ONE_SELECTOR)
        if any(not 1 <= len(i) <= 256 for i in self.sampleIds):
            raise ValueError("spec.sampleIds: every id must be 1 to 256 characters")
        # No stored id or owner holds NUL (sources refuse it), and numpy string arrays drop trailing NULs,
        # so 'alice\0' would match owner 'alice': refuse it instead.
        if any("\x00" in i for i in self.sampleIds):
            raise ValueError("spec.sampleIds: an id must not contain a NUL character")
        if self.ownerKey is not None and "\x00" in self.ownerKey:
            raise ValueError("spec.ownerKey: must not contain a NUL character")
        return self


class ForgetRequestStatus(StatusBase):
    datasetRevision: int | None = Field(None, description="The Dataset revision that tombstones these samples.")
    samples: int | None = Field(None, description="Samples resolved and tombstoned by this request.")
    alreadyForgotten: int | None = Field(None, description="Samples that an earlier request had forgotten.")
    unknownIds: list[str] = Field(default_factory=list, description="Ids not in the Dataset (never guessed).")
    acceptedAt: str | None = None
    completedAt: str | None = None
    deadline: str | None = None
    timeLeft: str | None = Field(None, description="Time left to the deadline when last reconciled.")
    certificate: dict[str, Any] | None = Field(None, description="What held the samples, what was purged, new hashes.")


class ForgetRequest(Resource[ForgetRequestSpec, ForgetRequestStatus]):
    KIND: ClassVar[str] = "ForgetRequest"
    PLURAL: ClassVar[str] = "forgetrequests"
    SHORT_NAMES: ClassVar[list[str]] = ["swfr"]
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = [
        ("Phase", "string", ".status.phase", "Pending, Queued, WaitingForAdmission, Retraining, Complete or Failed"),
        ("Dataset", "string", ".spec.datasetRef", ""),
        ("Samples", "integer", ".status.samples", "samples tombstoned"),
        ("Revision", "integer", ".status.datasetRevision", "dataset revision"),
        ("Left", "string", ".status.timeLeft", "time left to the deadline"),
        ("Age", "date", ".metadata.creationTimestamp", ""),
    ]
