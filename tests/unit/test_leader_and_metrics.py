"""The pure parts of leader election and of the operator's metrics. Both run for real on the control
plane (tests/cluster/test_production_operator.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shardwise.kube import metrics
from shardwise.kube.leader import Seen, decide

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def test_a_lease_is_created_renewed_taken_over_once_expired_and_otherwise_waited_for():
    assert decide("me", None, NOW) == "create"
    assert decide("me", Seen("me", NOW - timedelta(seconds=3), 15), NOW) == "renew"
    assert decide("me", Seen("other", NOW - timedelta(seconds=3), 15), NOW) == "wait"
    assert decide("me", Seen("other", NOW - timedelta(seconds=15), 15), NOW) == "wait"  # not yet past its duration
    assert decide("me", Seen("other", NOW - timedelta(seconds=16), 15), NOW) == "take"
    assert decide("me", Seen(None, NOW, 15), NOW) == "take"  # released on shutdown
    assert decide("me", Seen("other", None, 15), NOW) == "take"


def job(purpose: str, **status) -> dict:
    return {"metadata": {"labels": {"shardwise.io/purpose": purpose}}, "status": status,
            "spec": {"suspend": status.pop("suspend", False)}}


def test_jobs_are_counted_by_purpose_and_outcome():
    jobs = [job("train"), job("train", succeeded=1), job("retrain", conditions=[{"type": "Failed", "status": "True"}]),
            job("retrain", suspend=True), job("evaluate", conditions=[{"type": "Complete", "status": "True"}])]
    assert metrics.job_counts(jobs) == {("train", "active"): 1, ("train", "succeeded"): 1, ("retrain", "failed"): 1,
                                        ("retrain", "suspended"): 1, ("evaluate", "succeeded"): 1}


def test_namespace_gauges_follow_the_objects_and_drop_finished_deadlines():
    def fr(name: str, phase: str, deadline: str | None) -> dict:
        return {"metadata": {"name": name}, "status": {"phase": phase, **({"deadline": deadline} if deadline else {})}}
    metrics.observe_namespace("t1", [job("train")], [fr("a", "Retraining", "2026-12-05T12:00:00Z"),
                                                    fr("b", "Complete", "2026-12-04T12:00:00Z")], NOW)
    sample = lambda name, **labels: metrics.REGISTRY.get_sample_value(name, labels)  # noqa: E731
    assert sample("shardwise_forget_deadline_seconds_left", namespace="t1", request="a") == 2 * 86400
    assert sample("shardwise_forget_deadline_seconds_left", namespace="t1", request="b") is None  # complete
    assert sample("shardwise_forget_requests", namespace="t1", phase="Complete") == 1
    assert sample("shardwise_forget_requests", namespace="t1", phase="Failed") == 0
    assert sample("shardwise_jobs", namespace="t1", purpose="train", outcome="active") == 1
    metrics.observe_namespace("t1", [], [], NOW)  # everything deleted
    assert sample("shardwise_forget_deadline_seconds_left", namespace="t1", request="a") is None
    assert sample("shardwise_jobs", namespace="t1", purpose="train", outcome="active") == 0
    metrics.certified("t1", "2026-12-03T12:00:00Z", "2026-12-03T12:01:30Z")
    assert sample("shardwise_forget_time_to_certificate_seconds_sum", namespace="t1") == 90
