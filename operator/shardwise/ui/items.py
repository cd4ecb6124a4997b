"""What the annotation page lists: ranked sample rows, their filters and pages. Pure numpy.

Three lists, all over one Experiment's predictions:
- candidates: the report's label-issue candidates (out-of-shard probabilities disagree with the label);
- errors: samples of the Experiment's split that the published ensemble gets wrong;
- browse: every sample still active, in dataset order, with its current label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shardwise.diagnosis.predictions import Predictions

View = Literal["candidates", "errors", "browse"]
# States of a row against the Dataset's current revision (the report was made at an older one).
OPEN, RELABELLED, REMOVED = 0, 1, 2
TEST_SHARD = -1
MAX_LIMIT = 200


@dataclass(frozen=True)
class Rows:
    """Aligned columns of one list, in the order the page shows them (most suspicious first)."""

    ids: np.ndarray  # str (K,)
    label: np.ndarray  # int64 (K,) code of the label the row is about (at the tested revision; current in browse)
    suggested: np.ndarray  # int64 (K,) code of the proposed label, -1 when there is none
    score: np.ndarray  # float64 (K,) higher = look at it first; NaN where it does not apply
    label_prob: np.ndarray  # float64 (K,) probability of the given label
    suggested_prob: np.ndarray  # float64 (K,)
    train: np.ndarray  # bool (K,)
    shard: np.ndarray  # int32 (K,), -1 for test samples
    slice: np.ndarray  # int32 (K,), -1 for test samples

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def candidate_rows(report: dict, preds: Predictions) -> Rows:
    """The report's labelIssues candidates as ranked. Found again from the predictions, with the
    same finder, for a report that has none or that keeps only the first of them (500): the page
    lists every flagged sample."""
    issues = report.get("labelIssues")
    if issues is None or issues.get("flagged", 0) > len(issues.get("candidates") or []):
        from shardwise.diagnosis.diagnose import label_issue_rows

        issues = label_issue_rows(preds, len(preds))
    cands = issues["candidates"]
    code = {c: i for i, c in enumerate(preds.class_names)}

    def col(key: str, dtype, conv=lambda v: v) -> np.ndarray:
        return np.array([conv(c[key]) for c in cands], dtype=dtype)

    return Rows(col("id", str),
                col("label", np.int64, lambda v: code.get(v, -1)),
                col("suggested", np.int64, lambda v: code.get(v, -1)),
                col("score", np.float64), col("labelProb", np.float64), col("suggestedProb", np.float64),
                col("train", bool), col("shard", np.int32), col("slice", np.int32))


def error_rows(preds: Predictions, split: str) -> Rows:
    """Samples of `split` the ensemble predicts wrongly, lowest probability of the given label first."""
    mean = preds.probs.mean(axis=0, dtype=np.float64)  # probabilities even when the ensemble votes
    pred = preds.predicted()
    m = np.arange(len(preds))
    lp, pp = mean[m, preds.labels], mean[m, pred]
    in_split = {"test": ~preds.train, "train": preds.train, "all": np.ones(len(preds), bool)}[split]
    wrong = np.flatnonzero(in_split & (pred != preds.labels))
    order = wrong[np.argsort(lp[wrong], kind="stable")]
    return _rows(preds, order, preds.labels[order], pred[order], 1.0 - lp[order], lp[order], pp[order])


def browse_rows(preds: Predictions, current_label: np.ndarray, active: np.ndarray) -> Rows:
    """Every sample of the predictions still active now, in their order, with its current label.

    current_label and active are aligned with preds.ids (looked up in the current revision).
    The suggestion is the ensemble's prediction where it differs from the current label.
    """
    mean = preds.probs.mean(axis=0, dtype=np.float64)
    pred = preds.predicted()
    keep = np.flatnonzero(active)
    lab = current_label[keep].astype(np.int64)
    lp, pp = mean[keep, lab], mean[keep, pred[keep]]
    sug = np.where(pred[keep] != lab, pred[keep], -1)
    return _rows(preds, keep, lab, sug, np.full(keep.size, np.nan), lp, pp)


def _rows(preds: Predictions, idx: np.ndarray, label, suggested, score, lp, sp) -> Rows:
    return Rows(preds.ids[idx].astype(str), np.asarray(label, np.int64), np.asarray(suggested, np.int64),
                np.asarray(score, np.float64), np.asarray(lp, np.float64), np.asarray(sp, np.float64),
                preds.train[idx].astype(bool), preds.shard[idx].astype(np.int32), preds.slice[idx].astype(np.int32))


def row_states(rows: Rows, positions: np.ndarray, current_label: np.ndarray, active: np.ndarray) -> np.ndarray:
    """OPEN, RELABELLED or REMOVED for each row, against the Dataset's current revision.

    positions: each row's index in the dataset (-1 where unknown: treated as removed).
    """
    known = positions >= 0
    p = np.where(known, positions, 0)
    state = np.full(len(rows), OPEN, dtype=np.int8)
    state[current_label[p] != rows.label] = RELABELLED
    state[~known | ~active[p]] = REMOVED
    return state


class ListQuery(BaseModel):
    """The query string of /api/items. Every field is optional; errors name the field."""

    model_config = ConfigDict(extra="forbid")

    experiment: str | None = None
    view: View = "candidates"
    label: str | None = Field(None, description="only rows whose label (given, or current in browse) is this class")
    shard: int | None = Field(None, ge=TEST_SHARD, description="a shard, or -1 / 'test' for the test split")
    minScore: float | None = Field(None, allow_inf_nan=False)
    offset: int = Field(0, ge=0)
    limit: int = Field(24, ge=1, le=MAX_LIMIT)
    fixed: bool = Field(False, description="also list rows already acted on since the report")

    @field_validator("label", "shard", "minScore", mode="before")
    @classmethod
    def _blank_is_none(cls, v):
        return None if v == "" else v

    @field_validator("shard", mode="before")
    @classmethod
    def _test_shard(cls, v):
        return TEST_SHARD if v == "test" else v

    @classmethod
    def parse(cls, params: dict[str, str]) -> ListQuery:
        """Raises ValueError('<field>: <why>')."""
        try:
            return cls.model_validate(params)
        except ValidationError as e:
            raise ValueError(first_error(e)) from None


def first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{where}: {err['msg']}"


def select(rows: Rows, q: ListQuery, label_code: int | None, states: np.ndarray) -> np.ndarray:
    """Indices of the rows that pass the filters, in list order."""
    keep = np.ones(len(rows), dtype=bool)
    if label_code is not None:
        keep &= rows.label == label_code
    if q.shard is not None:
        keep &= rows.shard == q.shard
    if q.minScore is not None:
        keep &= ~(rows.score < q.minScore)  # NaN scores (browse) are not filtered out
    if not q.fixed:
        keep &= states == OPEN
    return np.flatnonzero(keep)


def page(total: int, offset: int, limit: int) -> tuple[int, int]:
    """[start, stop) of the page at `offset`; an offset past the end gives the last page."""
    if total <= 0:
        return 0, 0
    start = min(offset, ((total - 1) // limit) * limit)
    return start, min(start + limit, total)
