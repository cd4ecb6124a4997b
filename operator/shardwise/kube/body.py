"""The kube body: API objects in, brain decisions out as Jobs, status patches and Events.

The pass itself is reconcile/namespace.py; this module supplies it with resources (listed and
patched on the API server) and an executor (Jobs). Everything the pass decides from comes from the
API server and the store; what is kept between events (one reconciler per namespace: its store
client and dataset cache) only saves work, so a restart resumes where the last run stopped. Job
names are deterministic, so a repeated step is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar, cast

import kopf
from minio import Minio
from pydantic import ValidationError

from shardwise.api import Correction, Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import Resource, StatusBase, iso, now
from shardwise.api.validation import describe_validation
from shardwise.brain.model import StartJob
from shardwise.brain.versions import JobLiveness, JobState
from shardwise.control import StoreControl
from shardwise.errors import ShardwiseError
from shardwise.kube import metrics
from shardwise.kube.client import Kube
from shardwise.kube.jobs import (
    TrainerSettings,
    build_evaluation_job,
    build_experiment_job,
    build_experiment_model_body,
    build_training_job,
)
from shardwise.kube.settings import OperatorSettings
from shardwise.reconcile.namespace import NamespaceReconciler
from shardwise.reconcile.ports import Snapshot, SourceAccess
from shardwise.store import open_store, s3_attempts, s3_client
from shardwise.store.base import Store
from shardwise.store.s3 import S3Store

log = logging.getLogger("shardwise.operator")
R = TypeVar("R", bound=Resource)
# On a Dataset that a ShardedModel or Experiment names: its deletion handler (and so its finalizer) applies
# to these only, so an unused Dataset deletes at once even with the operator stopped.
IN_USE = "shardwise.io/in-use"
# One reconcile at a time per namespace: Job events and timers may arrive together.
_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class Body:
    def __init__(self, kube: Kube, settings: OperatorSettings):
        self.kube, self.settings = kube, settings
        self._reconcilers: dict[str, tuple[tuple[str, ...], NamespaceReconciler]] = {}

    # -- plumbing -------------------------------------------------------------------------
    async def store_for(self, ns: str) -> Store:
        """The tenant's store: its own prefix, with credentials from its own Secret."""
        return (await self._store_and_creds(ns))[0]

    async def _store_and_creds(self, ns: str) -> tuple[Store, tuple[str, ...]]:
        kept = self._reconcilers.get(ns)
        if self.settings.dev_store:
            return (kept[1].control.store if kept else open_store(self.settings.dev_store)), ()
        creds = await self._tenant_creds(ns)
        if kept is not None and kept[0] == creds:
            return kept[1].control.store, creds
        store = S3Store(self._client(creds), self.settings.bucket, self.settings.prefix, attempts=s3_attempts())
        await asyncio.to_thread(store.ensure_bucket)
        return store, creds

    async def _tenant_creds(self, ns: str) -> tuple[str, str]:
        creds = await self.kube.secret(ns, self.settings.s3_secret)
        return creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"]

    def _client(self, creds: tuple[str, ...]) -> Minio:
        return s3_client(self.settings.s3_endpoint, *creds)

    async def source_opener(self, ns: str) -> Callable[[str], Store] | None:
        """How a Dataset's s3:// source is read: with the tenant's own credentials (its Secret), never the
        operator's, so a tenant reads only what its keys reach. None in dev mode (the process env)."""
        if self.settings.dev_store:
            return None
        client = self._client(await self._tenant_creds(ns))

        def open_source(uri: str) -> Store:  # "s3://bucket": read only, so the bucket is never created
            return S3Store(client, uri[len("s3://"):].split("/", 1)[0], "", attempts=3)
        return open_source

    def trainer(self, ns: str) -> TrainerSettings:
        s = self.settings
        return TrainerSettings(image=s.trainer_image, store_uri=s.store_uri(ns), s3_endpoint=s.s3_endpoint,
                               s3_secret=s.s3_secret, backoff_limit=s.backoff_limit,
                               active_deadline_seconds=s.deadline_seconds, gpu_tolerations=tuple(s.gpu_tolerations),
                               image_pull_secrets=s.image_pull_secrets)

    async def _parse(self, cls: type[R], doc: dict[str, Any]) -> R | None:
        """A bad spec becomes a Failed condition naming the field, never an exception (no crash loop)."""
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            msg = describe_validation(e)
            meta = doc.get("metadata", {})
            status = {"phase": "Failed", "observedGeneration": meta.get("generation"), "message": msg,
                      "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": msg,
                                      "observedGeneration": meta.get("generation"), "lastTransitionTime": iso(now())}]}
            if (doc.get("status") or {}).get("message") != msg:
                await self.kube.patch_status(cls.PLURAL, meta["namespace"], meta["name"], status)
                kopf.warn(cast(kopf.Body, doc), reason="InvalidSpec", message=msg)
                log.warning(f"{cls.KIND.lower()}/{meta.get('namespace')}/{meta.get('name')}: InvalidSpec: {msg}")
            return None

    async def _put_status(self, res: Resource, status) -> bool:
        if status.same_as(res.status):
            return False
        await self.kube.patch_status(res.PLURAL, res.namespace, res.name, status.model_dump(mode="json"))
        res.status = status
        return True

    # -- the namespace pass ------------------------------------------------------------------
    async def reconciler(self, ns: str) -> NamespaceReconciler:
        """One reconciler per namespace, kept across events (its store, its dataset cache); made anew when
        the tenant's store credentials change."""
        store, creds = await self._store_and_creds(ns)
        kept = self._reconcilers.get(ns)
        if kept is None or kept[0] != creds:
            control = StoreControl(store, ns, log.info)
            kept = (creds, NamespaceReconciler(control, KubeResources(self, ns), JobExecutor(self, ns), log.info))
            self._reconcilers[ns] = kept
        return kept[1]

    async def reconcile_namespace(self, ns: str, max_passes: int = 8) -> None:
        """Passes until nothing changes (publish, purge and completion are steps of their own)."""
        async with _locks[ns]:
            rec = await self.reconciler(ns)
            try:
                for _ in range(max_passes):
                    with metrics.PASS_SECONDS.labels(ns).time():
                        if not await rec.run_pass():
                            return
            finally:
                jobs = await self.kube.managed_jobs(ns)
                metrics.observe_namespace(ns, jobs, await self.kube.list("forgetrequests", ns), now())

    async def _mark_in_use(self, ns: str, docs: dict[str, list[dict[str, Any]]]) -> None:
        """Label each Dataset in use, and only those (see IN_USE)."""
        used = {(d.get("spec") or {}).get("datasetRef") for p in ("shardedmodels", "experiments") for d in docs[p]}
        for d in docs["datasets"]:
            meta = d["metadata"]
            want = "true" if meta["name"] in used else None
            if (meta.get("labels") or {}).get(IN_USE) != want:
                await self.kube.patch_labels("datasets", ns, meta["name"], {IN_USE: want})
                meta.setdefault("labels", {})[IN_USE] = want

    async def delete_model(self, m: ShardedModel) -> int:
        """storagePolicy Delete: remove the model's objects from the store; Retain keeps them (and the
        record beside its Dataset, so that later forgets purge them too)."""
        if m.spec.storagePolicy != "Delete":
            return 0
        async with _locks[m.namespace]:  # not while a pass of its namespace may write under the model's prefix
            control = (await self.reconciler(m.namespace)).control
            prefix = control.layout.model_objects(m.name, m.metadata.uid or "nouid")
            n = len(await asyncio.to_thread(control.store.delete_prefix, prefix))
            await asyncio.to_thread(control.forget_model, m)
        return n

    async def dataset_users(self, ds: Dataset) -> list[str]:
        """The ShardedModels and Experiments that name this Dataset (they hold it from deletion)."""
        users = []
        for plural, kind in (("shardedmodels", "ShardedModel"), ("experiments", "Experiment")):
            for doc in await self.kube.list(plural, ds.namespace):
                if (doc.get("spec") or {}).get("datasetRef") == ds.name:
                    users.append(f"{kind} {doc['metadata']['name']}")
        return users


class KubeResources:
    """The pass's resources from the API server: listed and parsed (a bad spec marked Failed), statuses
    patched, Events posted."""

    def __init__(self, body: Body, ns: str):
        self.body, self.ns = body, ns

    async def snapshot(self) -> Snapshot:
        kube, parse = self.body.kube, self.body._parse
        docs = {p: await kube.list(p, self.ns) for p in ("datasets", "forgetrequests", "corrections",
                                                         "shardedmodels", "experiments")}
        await self.body._mark_in_use(self.ns, docs)
        snap = Snapshot()
        for doc in docs["datasets"]:
            snap.datasets[doc["metadata"]["name"]] = await parse(Dataset, doc)
        snap.forgets = [r for r in [await parse(ForgetRequest, d) for d in docs["forgetrequests"]] if r]
        snap.corrections = [r for r in [await parse(Correction, d) for d in docs["corrections"]] if r]
        snap.models = [r for r in [await parse(ShardedModel, d) for d in docs["shardedmodels"]] if r]
        snap.experiments = [r for r in [await parse(Experiment, d) for d in docs["experiments"]] if r]
        return snap

    async def put_status(self, res: Resource, status: StatusBase) -> bool:
        return await self.body._put_status(res, status)

    async def create_model(self, owner: Experiment, model: ShardedModel) -> bool:
        return await self.body.kube.create("shardedmodels", owner.namespace,
                                           build_experiment_model_body(owner, model))

    async def source_access(self, ds: Dataset) -> SourceAccess:
        uri = ds.spec.source.uri
        if uri and not uri.startswith("s3://"):
            return SourceAccess(refusal="spec.source.uri: in a cluster a Dataset is read from s3:// only "
                                        "(the operator never reads its own files)")
        return SourceAccess(opener=await self.body.source_opener(self.ns) if uri else None)

    def event(self, res: Resource, reason: str, message: str) -> None:
        _event(res.to_doc(), reason=reason, message=message)

    def certified(self, fr: ForgetRequest) -> None:
        metrics.certified(self.ns, fr.metadata.creationTimestamp, fr.status.completedAt if fr.status else None)


class JobExecutor:
    """Work as batch/v1 Jobs of the trainer image; what runs is what the API server lists."""

    def __init__(self, body: Body, ns: str):
        self.body, self.ns = body, ns

    async def work_of(self, m: ShardedModel) -> JobWork:
        return JobWork(await self.body.kube.jobs_of(self.ns, m.name))

    async def start_training(self, m: ShardedModel, job: StartJob, request_key: str) -> bool:
        return await self.body.kube.create_job(self.ns, build_training_job(m, job, request_key,
                                                                           self.body.trainer(self.ns)))

    async def start_evaluation(self, m: ShardedModel, name: str, version: int, request_key: str) -> bool:
        return await self.body.kube.create_job(self.ns, build_evaluation_job(m, version, request_key,
                                                                             self.body.trainer(self.ns)))

    async def start_experiment(self, exp: Experiment, m: ShardedModel, name: str, version: int,
                               request_key: str) -> bool:
        return await self.body.kube.create_job(self.ns, build_experiment_job(m, exp, version, request_key,
                                                                             self.body.trainer(self.ns)))


class JobWork:
    def __init__(self, jobs: dict[str, dict[str, Any]]):
        self.jobs = jobs
        self.liveness = _liveness(jobs)

    def started(self, name: str) -> bool:
        return name in self.jobs  # a Job stays (until its TTL) whether it succeeded or failed

    def has_room(self) -> bool:
        return True  # the cluster's scheduler (or Kueue) decides when a Job runs


def _event(obj: dict[str, Any], reason: str, message: str) -> None:
    """An Event on the object (kubectl describe), and the same line in the operator's log (kubectl logs)."""
    try:
        kopf.info(cast(kopf.Body, obj), reason=reason, message=message)
    except LookupError:  # outside kopf's handler context (no event queue): the log line below stands for it
        pass
    meta = obj.get("metadata") or {}
    log.info(f"{str(obj.get('kind', '')).lower()}/{meta.get('namespace')}/{meta.get('name')}: {reason}: {message}")


def _liveness(jobs: dict[str, dict[str, Any]]) -> JobLiveness:
    """Job state from the API server, the result from the store (the trainer writes it)."""
    def state(name: str, st: dict[str, Any]) -> JobState | None:
        job = jobs.get(name)
        if job is None:  # gone (TTL) or never created: the store says whether it finished
            return st.get("state") if st.get("state") in ("succeeded", "failed") else None
        js = job.get("status") or {}
        conds = {c.get("type"): c for c in js.get("conditions") or [] if c.get("status") == "True"}
        if "Failed" in conds:
            st.setdefault("message", conds["Failed"].get("message") or conds["Failed"].get("reason", "Job failed"))
            return "failed"
        if js.get("succeeded") or "Complete" in conds:
            if st.get("state") == "succeeded":
                return "succeeded"
            st["message"] = "the Job succeeded but the trainer wrote no result to the store"
            return "failed"
        if (job.get("spec") or {}).get("suspend") and not js.get("active"):
            return "waiting"  # held by its queue (Kueue) until admitted
        return "running"
    return state


__all__ = ["Body", "ShardwiseError"]
