"""Shared pieces of every resource: metadata, conditions, the envelope."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import to_jsonable_python

from shardwise import API_GROUP, API_VERSION

API = f"{API_GROUP}/{API_VERSION}"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# A Kubernetes DNS-1123 label: it is safe as a store key segment and a Job name part.
# A figure in a status is for reading (kubectl get cannot format a number): four decimals, more than a held-out
# split of thousands of samples resolves. The exact figure stays in the store (the evaluation record, the report).
FIGURE_DECIMALS = 4


def _figure(v: float) -> float:
    return round(v, FIGURE_DECIMALS) if math.isfinite(v) else v


Figure = Annotated[float, AfterValidator(_figure)]

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL),
    Field(description="A DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."),
]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Strict(BaseModel):
    """Unknown fields are errors: a typo in a manifest must not be ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Lenient(BaseModel):
    """Statuses and metadata tolerate fields written by other tools."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ObjectMeta(Lenient):
    name: Name
    namespace: Name = Field("default", description="The tenant: one store prefix per namespace.")
    uid: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


ConditionStatus = Literal["True", "False", "Unknown"]


REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"  # metav1.Condition's


class Condition(Lenient):
    """A status condition as metav1.Condition has it (the CRDs keep them as a list-map keyed by type)."""

    type: str = Field(min_length=1, max_length=316, description="Ready, Progressing, Failed, Degraded, ...")
    status: ConditionStatus
    observedGeneration: int | None = Field(None, ge=0, description="The generation this condition was set for.")
    reason: str = Field(min_length=1, max_length=1024, pattern=REASON,
                        description="CamelCase reason for the last transition.")
    message: str = Field("", max_length=32768, description="Human-readable detail.")
    lastTransitionTime: str = Field(default_factory=lambda: iso(now()), json_schema_extra={"format": "date-time"})


class StatusBase(Lenient):
    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=True)  # Figure rounds

    phase: str = "Pending"
    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    message: str = ""

    def same_as(self, other: StatusBase | None) -> bool:
        """Equal but for condition timestamps: a status write is needed only when this is False."""
        def key(st: StatusBase) -> tuple[Any, ...]:
            return st.model_dump(exclude={"conditions"}), [(c.type, c.status, c.reason, c.message)
                                                           for c in st.conditions]
        return other is not None and key(self) == key(other)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def set_condition(self, type_: str, status: ConditionStatus, reason: str, message: str = "") -> None:
        """Set a condition; lastTransitionTime moves only when status changes."""
        old = self.condition(type_)
        if old is not None and old.status == status:
            old.reason, old.message, old.observedGeneration = reason, message, self.observedGeneration
            return
        new = Condition(type=type_, status=status, reason=reason, message=message,
                        observedGeneration=self.observedGeneration)
        self.conditions = [c for c in self.conditions if c.type != type_] + [new]


READY_COLUMN = ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status',
                "the Ready condition: True, False or Unknown")

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=StatusBase)


class Resource(Lenient, Generic[SpecT, StatusT]):
    """The envelope of every Shardwise custom resource."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    SHORT_NAMES: ClassVar[list[str]] = []
    # (name, type, jsonPath, description) for kubectl get
    PRINTER_COLUMNS: ClassVar[list[tuple[str, str, str, str]]] = []

    apiVersion: Literal["shardwise.io/v1alpha1"] = "shardwise.io/v1alpha1"  # API
    kind: str
    metadata: ObjectMeta
    spec: SpecT
    status: StatusT | None = None

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, v: str) -> str:
        if cls.KIND and v != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND!r}, not {v!r}")
        return v

    @classmethod
    def columns(cls) -> list[tuple[str, str, str, str]]:
        """The printer columns: the kind's own, with the Ready condition's status after the phase."""
        return [*cls.PRINTER_COLUMNS[:1], READY_COLUMN, *cls.PRINTER_COLUMNS[1:]]

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def to_doc(self) -> dict[str, Any]:
        # JSON has no NaN or infinity: such a number (in a field kept from another tool, say) is dropped,
        # not dumped as null, so that the stored form reads back as the same document. Explicit nulls
        # inside free-form values (a certificate's datasetRevision) are content and stay.
        doc: dict[str, Any] = to_jsonable_python(_without_non_finite(self.model_dump(exclude_none=True)))
        return doc


def _without_non_finite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_non_finite(v) for k, v in node.items() if not _non_finite(v)}
    if isinstance(node, list):
        return [_without_non_finite(v) for v in node if not _non_finite(v)]
    return node


def _non_finite(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


def cel_rules(*rules: tuple[str, str]) -> ConfigDict:
    """A model's cross-field rules as CEL for its CRD schema (x-kubernetes-validations): the API server
    refuses what the model's own validator refuses, with the same message. Pass as `model_config`."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]})


def dns_label_ok(s: str) -> bool:
    return len(s) <= 63 and re.match(DNS1123_LABEL, s) is not None
