"""The operator's Prometheus metrics (`shardwise operator --metrics-port`), on a registry of its own.

What they answer: is the operator working (passes and how long they take), what is it running
(Jobs by purpose and outcome), where are the forget requests (by phase, seconds left to each
deadline) and how long does a forget take to certify. Gauges are recomputed from the API server's
objects at each namespace pass, so a restarted operator reports the truth at once.
"""

from __future__ import annotations

from collections import Counter as Tally
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
PASS_SECONDS = Histogram("shardwise_reconcile_pass_seconds", "Duration of one namespace pass (its count: passes run)",
                         ["namespace"], registry=REGISTRY)
JOBS = Gauge("shardwise_jobs", "The operator's Jobs, by purpose (train, retrain, evaluate, experiment) and outcome "
             "(active, succeeded, failed, suspended)", ["namespace", "purpose", "outcome"], registry=REGISTRY)
FORGETS = Gauge("shardwise_forget_requests", "ForgetRequests by phase", ["namespace", "phase"], registry=REGISTRY)
DEADLINE_LEFT = Gauge("shardwise_forget_deadline_seconds_left", "Seconds left to the deadline of each ForgetRequest "
                      "not yet Complete (negative: overdue)", ["namespace", "request"], registry=REGISTRY)
TIME_TO_CERTIFICATE = Histogram(
    "shardwise_forget_time_to_certificate_seconds", "From a ForgetRequest's creation to its certificate",
    ["namespace"], registry=REGISTRY,
    buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 86400, 30 * 86400))
PHASES = ("Pending", "Queued", "Retraining", "Complete", "Failed")


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)


def job_outcome(job: dict[str, Any]) -> str:
    st = job.get("status") or {}
    conds = {c.get("type") for c in st.get("conditions") or [] if c.get("status") == "True"}
    if "Failed" in conds:
        return "failed"
    if "Complete" in conds or st.get("succeeded"):
        return "succeeded"
    if (job.get("spec") or {}).get("suspend"):
        return "suspended"
    return "active"


def job_counts(jobs: list[dict[str, Any]]) -> Tally[tuple[str, str]]:
    """(purpose, outcome) -> how many Jobs. Pure."""
    return Tally(((j.get("metadata") or {}).get("labels", {}).get("shardwise.io/purpose", "unknown"), job_outcome(j))
                 for j in jobs)


def seconds_left(deadline: str, now: datetime) -> float:
    end = datetime.strptime(deadline, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (end - now).total_seconds()


def observe_namespace(ns: str, jobs: list[dict[str, Any]], forgets: list[dict[str, Any]], now: datetime) -> None:
    """Set the gauges of one namespace from its Jobs and ForgetRequests (as the API server lists them)."""
    counts = job_counts(jobs)
    for purpose, outcome in {(p, o) for (n, p, o) in _labels(JOBS) if n == ns} | set(counts):
        JOBS.labels(ns, purpose, outcome).set(counts.get((purpose, outcome), 0))
    phases = Tally((fr.get("status") or {}).get("phase", "Pending") for fr in forgets)
    for phase in set(PHASES) | set(phases):
        FORGETS.labels(ns, phase).set(phases.get(phase, 0))
    open_ = {}
    for fr in forgets:
        st = fr.get("status") or {}
        if st.get("deadline") and st.get("phase") != "Complete":
            open_[fr["metadata"]["name"]] = seconds_left(st["deadline"], now)
    for n, name in [(n, r) for (n, r) in _labels(DEADLINE_LEFT) if n == ns and r not in open_]:
        DEADLINE_LEFT.remove(n, name)  # complete or deleted: no longer counting down
    for name, left in open_.items():
        DEADLINE_LEFT.labels(ns, name).set(left)


def certified(ns: str, created: str | None, completed: str | None) -> None:
    """A ForgetRequest got its certificate: how long it took."""
    if created and completed:
        t = [datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ") for x in (created, completed)]
        TIME_TO_CERTIFICATE.labels(ns).observe(max(0.0, (t[1] - t[0]).total_seconds()))


def _labels(metric: Gauge) -> list[tuple[str, ...]]:
    """The label values a metric has children for."""
    return [tuple(s.labels[k] for k in metric._labelnames) for fam in metric.collect() for s in fam.samples]
