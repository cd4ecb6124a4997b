"""Named fault points: places where a test may kill the process to prove recovery.

Production code calls `fault_point("publish.after-manifest")` at each step boundary.
It does nothing unless the environment variable SHARDWISE_FAULT names that point:

    SHARDWISE_FAULT=publish.after-manifest        die the first time the point is reached
    SHARDWISE_FAULT=trainer.mid-slice@3           die the third time

With SHARDWISE_FAULT_ONCE=<path> it fires in one process only, across all processes
(the first to create <path>): a retried trainer or a restarted reconciler then runs clean.

Dying is `os._exit(FAULT_EXIT_CODE)`: no finally blocks, no flushing, exactly like a
SIGKILL or a node loss. A process running in-thread (the operator under a test
runner) can set SHARDWISE_FAULT_ACTION=raise to get a `FaultInjected` instead.

Every point is listed in POINTS, so the fault tests can prove each one is reached
by a normal run and survived when it fires.
"""

from __future__ import annotations

import os
import sys
import threading

FAULT_EXIT_CODE = 86

POINTS: dict[str, str] = {
    # the trainer (the Job's process)
    "trainer.mid-slice": "half-way through a slice's epochs, before its checkpoint exists",
    "trainer.after-checkpoint": "a slice's checkpoint written, its meta.json not yet",
    "trainer.after-slice": "a slice fully stored, the next one not started",
    # the reconciler (local runner or operator)
    "dataset.after-revision": "a Dataset revision written, the ForgetRequests not yet marked accepted",
    "job.after-request": "a Job's request written, the Job not yet started",
    "publish.after-manifest": "a version manifest written, current.json not yet swapped",
    "publish.after-swap": "current.json swapped, the model's status not yet updated",
    "purge.mid-delete": "some of a purge plan's objects deleted, not all",
    "purge.after-delete": "a purge's objects deleted, its record not yet written",
    "forget.after-ledger": "a certificate appended to the ledger, the ForgetRequest not yet Completed",
}


class FaultInjected(BaseException):
    """Raised at a fault point under SHARDWISE_FAULT_ACTION=raise (BaseException: nothing catches it by accident)."""


_hits: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("SHARDWISE_FAULT", "")
    if not spec:
        return None
    name, _, nth = spec.partition("@")
    return name, int(nth or 1)


def fault_point(name: str) -> None:
    if name not in POINTS:  # a typo here would silently never fire
        raise ValueError(f"unknown fault point {name!r}")
    trace = os.environ.get("SHARDWISE_FAULT_TRACE")
    if trace:  # append-only log of points reached, so tests can prove coverage
        with open(trace, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != armed[1]:
            return
    once = os.environ.get("SHARDWISE_FAULT_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if os.environ.get("SHARDWISE_FAULT_ACTION") == "raise":
        raise FaultInjected(name)
    sys.stderr.write(f"shardwise: fault point {name} fired (SHARDWISE_FAULT)\n")
    sys.stderr.flush()
    os._exit(FAULT_EXIT_CODE)
