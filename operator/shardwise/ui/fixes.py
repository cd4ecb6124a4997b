"""Where the annotation page's fixes go: a Dataset revision written at once (the local body), or a
Correction object filed in a cluster as the page's user, which the operator applies.

Either way the page gets back the Dataset revision that carries the fix, or an ApiError naming why not.
"""

from __future__ import annotations

import threading
from typing import Literal, Protocol

from shardwise.api.correction import Correction, CorrectionSpec, LabelFix
from shardwise.control import StoreControl
from shardwise.errors import ClusterUnavailable, Forbidden, InvalidInput
from shardwise.local.lock import ReconcilerLock
from shardwise.ui.errors import ApiError

Action = Literal["relabel", "drop"]
LOCAL_NOTICE = ("Every fix is a new Dataset revision that records who and when. Fixes take effect on the next "
                "reconcile: `shardwise reconcile` retrains only the affected shards, from the affected slice.")
CLUSTER_NOTICE = ("Every fix is a Correction filed in the cluster as {user}; the operator applies it as a new "
                  "Dataset revision recording who and when, and retrains only the affected shards, from the "
                  "affected slice, at once.")


class Fixes(Protocol):
    user: str
    notice: str  # shown on the page
    effect: str  # said after each fix

    def apply(self, dataset: str, action: Action, sid: str, label: str | None) -> int:
        """The Dataset revision that carries the fix."""
        ...


class LocalFixes:
    effect = "It takes effect on the next reconcile."

    def __init__(self, control: StoreControl, user: str, lock: threading.RLock):
        """lock: the page's own, held while StoreControl (shared by request threads) works."""
        self.control, self.user, self.notice, self.lock = control, user, LOCAL_NOTICE, lock

    def apply(self, dataset: str, action: Action, sid: str, label: str | None) -> int:
        lock = ReconcilerLock(self.control.store.uri, self.control.namespace)
        if not lock.acquire():  # a revision must not be written under a running reconciler's feet
            raise ApiError(409, f"a reconciler (pid {lock.holder()}) is running on this store; retry when it is done")
        try:
            with self.lock:
                if action == "relabel":
                    return self.control.relabel(dataset, {sid: label or ""}, by=self.user)
                return self.control.drop(dataset, [sid], by=self.user)
        except InvalidInput as e:  # checked before; this is a race with another writer
            raise ApiError(409, str(e).removeprefix("--"), "id") from None
        finally:
            lock.release()


class ClusterFixes:
    """Each fix a Correction created with the page user's own credentials (the kube context's)."""

    effect = "The operator retrains the shards it touches now."

    def __init__(self, registry, wait_seconds: float = 60.0):  # registry: shardwise.kube.cluster.ClusterRegistry
        self.registry, self.wait_seconds = registry, wait_seconds
        self.user = registry.cluster.whoami()
        self.notice = CLUSTER_NOTICE.format(user=self.user)

    def apply(self, dataset: str, action: Action, sid: str, label: str | None) -> int:
        spec = (CorrectionSpec(datasetRef=dataset, author=self.user, relabel=[LabelFix(id=sid, label=label or "")])
                if action == "relabel" else CorrectionSpec(datasetRef=dataset, author=self.user, drop=[sid]))
        try:
            made = self.registry.create(Correction(kind="Correction", metadata={"name": "pending"}, spec=spec),
                                        generate_name=f"{dataset}-")
        except Forbidden as e:
            raise ApiError(403, str(e)) from None
        except InvalidInput as e:
            raise ApiError(400, str(e)) from None
        except ClusterUnavailable as e:
            raise ApiError(503, str(e)) from None
        done = self.registry.wait(Correction, made.name, lambda c: c.status is not None
                                  and c.status.phase in ("Applied", "Failed"), self.wait_seconds, every=0.3)
        st = done.status if done is not None else None
        if st is not None and st.phase == "Applied" and st.datasetRevision is not None:
            return st.datasetRevision
        if st is not None and st.phase == "Failed":
            raise ApiError(409, f"Correction {made.name}: {st.message}", "id")
        raise ApiError(504, f"Correction {made.name} is filed, but the operator has not applied it within "
                            f"{self.wait_seconds:.0f} s (is it running?); it will be applied when the operator runs")
