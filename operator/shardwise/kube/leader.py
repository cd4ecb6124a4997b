"""One active operator: leader election on a coordination.k8s.io Lease, as Kubernetes' own controllers do.

Every instance watches and keeps its caches warm, but only the holder of the Lease acts (passes,
Jobs, status writes, deletion handlers). The holder renews it every `renew` seconds; an instance
takes it over once it has not been renewed for `duration` seconds (the holder died or lost the API
server). A second `shardwise operator` (a laptop's, or a rollout's surge Pod) therefore waits,
saying who leads. The decision is pure (`decide`); the loop around it only reads and writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

log = logging.getLogger("shardwise.operator")
MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Seen:
    """A Lease as read: who holds it, when it was last renewed, for how long."""

    holder: str | None
    renewed: datetime | None
    duration: int


def decide(me: str, lease: Seen | None, now: datetime) -> str:
    """'create' (no Lease), 'renew' (ours), 'take' (another's, expired) or 'wait'. Pure."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if lease.holder is None or lease.renewed is None or now - lease.renewed > timedelta(seconds=lease.duration):
        return "take"
    return "wait"


def identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Leader:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, duration: int = 15, renew: float = 5.0):
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.duration, self.renew = namespace, name, duration, renew
        self.me = identity()
        self.leading = False
        self.holder: str | None = None
        self.said: bool | None = None  # what the log said last

    def _body(self, now: datetime, acquired: bool, rv: str | None = None) -> dict[str, Any]:
        spec = {"holderIdentity": self.me, "leaseDurationSeconds": self.duration, "renewTime": now.strftime(MICRO)}
        if acquired:
            spec["acquireTime"] = now.strftime(MICRO)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv  # optimistic: two instances taking it at once, one wins
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def step(self) -> bool:
        """Try once to hold the Lease; whether this instance leads now."""
        now = datetime.now(UTC)
        try:
            lease = await self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            lease = None
        seen = None if lease is None else Seen(lease.spec.holder_identity, lease.spec.renew_time,
                                               lease.spec.lease_duration_seconds or self.duration)
        action = decide(self.me, seen, now)
        self.holder = seen.holder if seen is not None else None
        try:
            if action == "create":
                await self.coord.create_namespaced_lease(self.namespace, self._body(now, True))
            elif action in ("renew", "take"):
                body = self._body(now, action == "take", lease.metadata.resource_version)
                if action == "renew" and lease.spec.acquire_time is not None:
                    body["spec"]["acquireTime"] = lease.spec.acquire_time.strftime(MICRO)
                await self.coord.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as e:
            if e.status not in (409, 422):  # another instance got there first
                raise
            action = "wait"
        leading = action != "wait"
        if leading:
            self.holder = self.me
        if leading != self.leading or self.said is None:  # and once at start, standing by or not
            self.said = leading
            log.info(f"leader election: {'leading' if leading else 'standing by'} (lease {self.namespace}/"
                     f"{self.name}, holder {self.holder}, me {self.me})")
        self.leading = leading
        return leading

    async def run(self, on_lead: Callable[[], Awaitable[None]]) -> None:
        """Keep trying; call on_lead each time this instance becomes the leader."""
        while True:
            was = self.leading
            try:
                if await self.step() and not was:
                    await on_lead()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the API server may be away: stop acting until renewed
                if self.leading:
                    log.warning(f"leader election: cannot renew the lease ({e}); standing by")
                self.leading = False
            await asyncio.sleep(self.renew)

    async def release(self) -> None:
        """On shutdown: let a standby take over at once instead of after `duration` seconds."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.me:
                body = self._body(datetime.now(UTC), False, lease.metadata.resource_version)
                body["spec"]["holderIdentity"] = None
                await self.coord.replace_namespaced_lease(self.name, self.namespace, body)
        except Exception as e:  # noqa: BLE001 - best effort: the lease expires anyway
            log.warning(f"leader election: could not release the lease: {e}")
