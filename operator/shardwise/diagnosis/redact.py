"""Take forgotten and dropped samples out of an Experiment's stored run. Pure.

A report and its predictions were computed over every sample active then. Once a sample is
tombstoned, its rows go: the predictions lose the sample, and the report's per-sample lists
(hardest samples, label-issue candidates, samples that flipped against the baseline) lose its
entries. The aggregate figures stay as what was measured then; `redactedSamples` counts the rows
taken out, so a reader knows the lists are shorter than they were.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

import numpy as np

from shardwise.diagnosis.predictions import Predictions

SAMPLE_LISTS = (("hardest",), ("labelIssues", "candidates"), ("comparison", "rightToWrong"),
                ("comparison", "wrongToRight"))


def report_ids(report: dict[str, Any]) -> set[str]:
    """Every sample id the report's per-sample lists name."""
    out: set[str] = set()
    for path in SAMPLE_LISTS:
        out |= {str(r.get("id")) for r in _list(report, path) or []}
    return out


def redact_report(report: dict[str, Any], gone: Collection[str]) -> tuple[dict[str, Any], int]:
    """(the report without rows of `gone` samples, how many rows were removed)."""
    gone = set(gone)
    out, removed = copy.deepcopy(report), 0
    for path in SAMPLE_LISTS:
        rows = _list(out, path)
        if rows is None:
            continue
        kept = [r for r in rows if str(r.get("id")) not in gone]
        removed += len(rows) - len(kept)
        _parent(out, path)[path[-1]] = kept
    if removed:
        out["redactedSamples"] = int(report.get("redactedSamples") or 0) + removed
    return out, removed


def redact_predictions(preds: Predictions, gone: Collection[str]) -> tuple[Predictions, int]:
    hit = np.isin(preds.ids.astype(str), np.array(sorted(gone), dtype=str))
    return (preds.subset(~hit), int(hit.sum())) if hit.any() else (preds, 0)


def _parent(doc: dict, path: tuple[str, ...]) -> dict:
    for k in path[:-1]:
        doc = doc.get(k) or {}
    return doc


def _list(doc: dict, path: tuple[str, ...]) -> list | None:
    v = _parent(doc, path).get(path[-1])
    return v if isinstance(v, list) else None
