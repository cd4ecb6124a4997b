"""Redaction of an Experiment's stored run after a forget (pure)."""

import numpy as np

from shardwise.diagnosis.predictions import Predictions
from shardwise.diagnosis.redact import redact_predictions, redact_report, report_ids

REPORT = {
    "accuracy": 0.75, "hardest": [{"id": "a"}, {"id": "b"}],
    "labelIssues": {"flagged": 2, "candidates": [{"id": "b"}, {"id": "c"}]},
    "comparison": {"rightToWrong": [{"id": "c"}], "wrongToRight": [{"id": "d"}]},
}


def test_every_per_sample_list_loses_the_gone_ids_and_the_count_is_kept():
    out, n = redact_report(REPORT, {"b", "c"})
    assert n == 4 and out["redactedSamples"] == 4  # rows: b and c are listed twice each
    assert report_ids(out) == {"a", "d"}
    assert out["accuracy"] == 0.75 and out["labelIssues"]["flagged"] == 2  # aggregates stay
    assert report_ids(REPORT) == {"a", "b", "c", "d"}  # the input is not changed
    again, n2 = redact_report(out, {"b", "c"})
    assert n2 == 0 and again == out  # idempotent: a rerun after a crash changes nothing


def test_a_report_without_lists_or_comparison_is_left_alone():
    out, n = redact_report({"accuracy": None, "comparison": None, "hardest": []}, {"a"})
    assert n == 0 and "redactedSamples" not in out


def test_predictions_lose_the_gone_rows_only():
    p = Predictions(np.array(["a", "b", "c"]), np.array([0, 1, 0]), np.array([True, True, False]),
                    np.array([0, 1, -1], dtype=np.int32), np.array([0, 0, -1], dtype=np.int32),
                    np.full((2, 3, 2), 0.5, dtype=np.float32), ("x", "y"))
    out, n = redact_predictions(p, {"b", "zz"})
    assert n == 1 and out.ids.tolist() == ["a", "c"] and out.probs.shape == (2, 2, 2)
    same, n0 = redact_predictions(out, {"b"})
    assert n0 == 0 and same is out
