"""kopf handlers: thin. Every event becomes one namespace pass of the kube body.

Run with `shardwise operator` or `kopf run -m shardwise.kube.handlers --standalone`.

Finalizers only where deleting needs the operator: a ShardedModel with `storagePolicy: Delete` (its
objects leave the store) and a Dataset in use (held until no model or experiment names it; the body
labels it `shardwise.io/in-use`). Everything else deletes at once, operator running or not: the
periodic resync is one pass per namespace, not a per-object timer (kopf puts a finalizer on every
object a timer watches).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from shardwise import API_GROUP, API_VERSION
from shardwise.api import Dataset, ShardedModel
from shardwise.api.common import iso, now
from shardwise.kube.body import IN_USE, Body
from shardwise.kube.client import Kube, make_api_client
from shardwise.kube.leader import Leader
from shardwise.kube.settings import OperatorSettings

CRS = ("datasets", "shardedmodels", "forgetrequests", "experiments")
MANAGED = {"app.kubernetes.io/managed-by": "shardwise"}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    conf = OperatorSettings.from_env()
    settings.posting.level = logging.INFO
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.watching.server_timeout = 300
    memo.body = Body(Kube(await make_api_client(conf.kube_host)), conf)
    memo.resync = conf.resync_seconds
    memo.namespaces = set()
    memo.wakeup = asyncio.Event()  # set when this instance becomes the leader: pass every namespace now
    memo.tasks = []
    memo.leader = None
    if conf.leader_election:
        memo.leader = Leader(memo.body.kube.api, conf.lease_namespace, conf.lease_name)
        memo.tasks.append(asyncio.create_task(memo.leader.run(_catch_up(memo))))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    for task in getattr(memo, "tasks", []):
        task.cancel()
    if getattr(memo, "leader", None) is not None:
        await memo.leader.release()
    if getattr(memo, "body", None) is not None:
        await memo.body.kube.api.close()


def _acting(memo: kopf.Memo) -> bool:
    """Whether this instance may act: it holds the Lease (or election is off)."""
    return memo.leader is None or memo.leader.leading


async def _pass(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace is None:  # the kinds are namespaced: kopf passes None for cluster-scoped ones only
        return
    memo.namespaces.add(namespace)  # seen while standing by too: the catch-up on taking over passes it
    if not memo.get("resync_started"):
        # started here, not at startup: a task copies the context it is made in, and only a handler's
        # context lets kopf post Events (kopf.info) from the passes the task runs
        memo.resync_started = True
        memo.tasks.append(asyncio.create_task(_resync(memo)))
    if _acting(memo):
        await memo.body.reconcile_namespace(namespace)


def _catch_up(memo: kopf.Memo):
    """Just became the leader: wake the resync, which passes every namespace seen (events that arrived
    while standing by were not acted on)."""
    async def wake() -> None:
        memo.wakeup.set()
    return wake


async def _resync(memo: kopf.Memo) -> None:
    """A safety net for what no event announces (a store outage that ended, a result a trainer wrote after
    its Job's last event): every resync_seconds, and at once when this instance becomes the leader, one
    pass of each namespace seen with Shardwise objects."""
    log = logging.getLogger("shardwise.operator")
    while True:
        try:
            await asyncio.wait_for(memo.wakeup.wait(), timeout=memo.resync)
        except TimeoutError:
            pass
        memo.wakeup.clear()
        for ns in sorted(memo.namespaces) if _acting(memo) else ():
            try:
                await memo.body.reconcile_namespace(ns)
            except Exception:  # noqa: BLE001 - logged; the next resync or event tries again
                log.exception(f"resync of namespace {ns} failed; tried again in {memo.resync:g} s")


for _plural in (*CRS, "corrections"):
    kopf.on.create(API_GROUP, API_VERSION, _plural, id=f"{_plural}-create")(_pass)
    kopf.on.resume(API_GROUP, API_VERSION, _plural, id=f"{_plural}-resume")(_pass)
    kopf.on.update(API_GROUP, API_VERSION, _plural, field="spec", id=f"{_plural}-update")(_pass)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_event(namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """An owned Job changed (started, progressed, finished): reconcile its namespace."""
    await _pass(namespace, memo)


@kopf.on.delete(API_GROUP, API_VERSION, "datasets", labels={IN_USE: "true"})
async def dataset_deleted(body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
    """A Dataset in use is held (its finalizer stays) until no ShardedModel or Experiment names it: its
    models' checkpoints must stay forgettable. Its stored data is kept either way (a ForgetRequest naming
    it still works while anything derived from it is stored)."""
    _stand_by_unless_leading(memo)
    ds = Dataset.model_validate(dict(body))
    users = await memo.body.dataset_users(ds)
    if users:
        msg = f"held from deletion: used by {', '.join(users)}; delete them first"
        status = dict(body.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "Deleting"]
        if not any(c.get("message") == msg for c in status.get("conditions") or []):
            await memo.body.kube.patch_status("datasets", ds.namespace, ds.name, {**status, "conditions": conds + [
                {"type": "Deleting", "status": "True", "reason": "InUse", "message": msg,
                 "lastTransitionTime": iso(now())}]})
        raise kopf.TemporaryError(msg, delay=15)
    logger.info("no model or experiment uses it: deleted (its stored data is kept)")


def _stand_by_unless_leading(memo: kopf.Memo) -> None:
    """A deletion handler of a standby: leave the finalizer for the leader (kopf retries later)."""
    if not _acting(memo):
        raise kopf.TemporaryError(f"standing by: {memo.leader.holder} leads", delay=10)


def _deletes_storage(spec: kopf.Spec, **_) -> bool:
    return spec.get("storagePolicy") == "Delete"


@kopf.on.delete(API_GROUP, API_VERSION, "shardedmodels", when=_deletes_storage)
async def model_deleted(body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
    _stand_by_unless_leading(memo)
    n = await memo.body.delete_model(ShardedModel.model_validate(dict(body)))
    logger.info(f"storagePolicy: removed {n} object(s) from the store")
