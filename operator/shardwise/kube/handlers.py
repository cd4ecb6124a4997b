"""kopf handlers: thin. Every event becomes one namespace pass of the kube body.

Run with `shardwise operator` or `kopf run -m shardwise.kube.handlers --standalone`.
"""

from __future__ import annotations

import logging

import kopf

from shardwise import API_GROUP, API_VERSION
from shardwise.api.common import iso, now
from shardwise.api import Dataset, ShardedModel
from shardwise.kube.body import Body
from shardwise.kube.client import Kube, make_api_client
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


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    if getattr(memo, "body", None) is not None:
        await memo.body.kube.api.close()


async def _pass(namespace: str, memo: kopf.Memo, **_) -> None:
    await memo.body.reconcile_namespace(namespace)


def _register(plural: str) -> None:
    kw = dict(group=API_GROUP, version=API_VERSION, plural=plural)
    kopf.on.create(**kw, id=f"{plural}-create")(_pass)
    kopf.on.resume(**kw, id=f"{plural}-resume")(_pass)
    kopf.on.update(**kw, field="spec", id=f"{plural}-update")(_pass)
    # a safety net: resync even when no event arrives (e.g. after a store outage)
    kopf.timer(**kw, interval=OperatorSettings.from_env().resync_seconds, initial_delay=5.0,
               id=f"{plural}-resync")(_pass)


for _plural in CRS:
    _register(_plural)

# A Correction is acted on once, when it appears (or when the operator starts and finds it pending):
# no timer, so no finalizer either — deleting one never waits for the operator. The other kinds'
# resync passes pick up any left pending.
for _handler in (kopf.on.create, kopf.on.resume):
    _handler(API_GROUP, API_VERSION, "corrections", id=f"corrections-{_handler.__name__}")(_pass)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_event(namespace: str, memo: kopf.Memo, **_) -> None:
    """An owned Job changed (started, progressed, finished): reconcile its namespace."""
    await memo.body.reconcile_namespace(namespace)


@kopf.on.delete(API_GROUP, API_VERSION, "datasets")
async def dataset_deleted(body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
    """A Dataset in use is held (its finalizer stays) until no ShardedModel or Experiment names it: its
    models' checkpoints must stay forgettable. Its stored data is kept either way (a ForgetRequest naming
    it still works while anything derived from it is stored)."""
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


@kopf.on.delete(API_GROUP, API_VERSION, "shardedmodels")
async def model_deleted(body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
    n = await memo.body.delete_model(ShardedModel.model_validate(dict(body)))
    logger.info(f"storagePolicy: removed {n} object(s) from the store")
