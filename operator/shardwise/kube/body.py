"""The kube body: API objects in, brain decisions out as Jobs, status patches and Events.

Everything it knows comes from the API server (resources, Jobs, status) and the
store; nothing is kept in memory between calls, so a restart resumes where the
last run stopped. Job names are deterministic, so a repeated step is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Callable

import kopf
from minio import Minio
from pydantic import ValidationError

from shardwise.api import Correction, Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import Resource, iso, now
from shardwise.api.dataset import DatasetStatus
from shardwise.brain.experiment import CreateModel, build_experiment_model, reconcile_experiment
from shardwise.brain.model import Evaluate, Publish, Purge, StartJob, reconcile_model
from shardwise.control import StoreControl
from shardwise.errors import ShardwiseError
from shardwise.kube import metrics
from shardwise.kube.client import Kube
from shardwise.kube.jobs import (TrainerSettings, build_evaluation_job, build_experiment_job,
                                 build_experiment_model_body, build_training_job, evaluation_job_name,
                                 experiment_job_name)
from shardwise.kube.settings import OperatorSettings
from shardwise.local.manifests import describe_validation
from shardwise.store import open_store
from shardwise.store.base import Store
from shardwise.store.s3 import S3Store

log = logging.getLogger("shardwise.operator")
# On a Dataset that a ShardedModel or Experiment names: its deletion handler (and so its finalizer) applies
# to these only, so an unused Dataset deletes at once even with the operator stopped.
IN_USE = "shardwise.io/in-use"
# One reconcile at a time per namespace: Job events and timers may arrive together.
_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class Body:
    def __init__(self, kube: Kube, settings: OperatorSettings):
        self.kube, self.settings = kube, settings

    # -- plumbing -------------------------------------------------------------------------
    async def store_for(self, ns: str) -> Store:
        """The tenant's store: its own prefix, with credentials from its own Secret."""
        if self.settings.dev_store:
            return open_store(self.settings.dev_store)
        store = S3Store(await self._tenant_client(ns), self.settings.bucket, self.settings.prefix)
        await asyncio.to_thread(store.ensure_bucket)
        return store

    async def _tenant_client(self, ns: str) -> Minio:
        creds = await self.kube.secret(ns, self.settings.s3_secret)
        endpoint = self.settings.s3_endpoint
        return Minio(endpoint.split("://", 1)[-1], creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"],
                     secure=endpoint.startswith("https://"))

    async def source_opener(self, ns: str) -> Callable[[str], Store] | None:
        """How a Dataset's s3:// source is read: with the tenant's own credentials (its Secret), never the
        operator's, so a tenant reads only what its keys reach. None in dev mode (the process env)."""
        if self.settings.dev_store:
            return None
        client = await self._tenant_client(ns)

        def open_source(uri: str) -> Store:  # "s3://bucket": read only, so the bucket is never created
            return S3Store(client, uri[len("s3://"):].split("/", 1)[0], "", attempts=3)
        return open_source

    def trainer(self, ns: str) -> TrainerSettings:
        s = self.settings
        return TrainerSettings(image=s.trainer_image, store_uri=s.store_uri(ns), s3_endpoint=s.s3_endpoint,
                               s3_secret=s.s3_secret, backoff_limit=s.backoff_limit,
                               active_deadline_seconds=s.deadline_seconds, gpu_tolerations=tuple(s.gpu_tolerations),
                               image_pull_secrets=s.image_pull_secrets)

    async def _parse(self, cls: type[Resource], doc: dict[str, Any]) -> Resource | None:
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
                kopf.warn(doc, reason="InvalidSpec", message=msg)
                log.warning(f"{cls.KIND.lower()}/{meta.get('namespace')}/{meta.get('name')}: InvalidSpec: {msg}")
            return None

    async def _put_status(self, res: Resource, status) -> bool:
        if status.same_as(res.status):
            return False
        await self.kube.patch_status(res.PLURAL, res.namespace, res.name, status.model_dump(mode="json"))
        res.status = status
        return True

    # -- the namespace pass ------------------------------------------------------------------
    async def reconcile_namespace(self, ns: str, max_passes: int = 8) -> None:
        """Passes until nothing changes (publish, purge and completion are steps of their own)."""
        async with _locks[ns]:
            control = StoreControl(await self.store_for(ns), ns, log.info)
            try:
                for _ in range(max_passes):
                    with metrics.PASS_SECONDS.labels(ns).time():
                        if not await self._pass(ns, control):
                            return
            finally:
                jobs = await self.kube.managed_jobs(ns)
                metrics.observe_namespace(ns, jobs, await self.kube.list("forgetrequests", ns), now())

    async def _pass(self, ns: str, control: StoreControl) -> bool:
        """Datasets, forget requests, corrections, models, experiments, completions: the local body's order."""
        changed = False
        docs = {p: await self.kube.list(p, ns) for p in ("datasets", "forgetrequests", "corrections",
                                                                 "shardedmodels", "experiments")}
        await self._mark_in_use(ns, docs)
        datasets: dict[str, Dataset | bool] = {}
        for doc in docs["datasets"]:
            ds = await self._parse(Dataset, doc)
            if ds is None:
                datasets[doc["metadata"]["name"]] = False  # an invalid spec: its models wait, naming it
                continue
            datasets[ds.name] = ds
            if ds.spec.source.uri and not ds.spec.source.uri.startswith("s3://"):
                await self._put_status(ds, _failed(ds, "spec.source.uri: in a cluster a Dataset is read from "
                                                       "s3:// only (the operator never reads its own files)"))
                continue
            opener = await self.source_opener(ns) if ds.spec.source.uri else None
            if await self._put_status(ds, await asyncio.to_thread(control.reconcile_dataset, ds, opener)):
                changed = True
                _event(doc, reason=ds.status.phase, message=ds.status.message or f"revision {ds.status.revision}")
        frs = [fr for fr in [await self._parse(ForgetRequest, d) for d in docs["forgetrequests"]] if fr]
        pending: dict[str, list[ForgetRequest]] = defaultdict(list)
        for fr in frs:
            if fr.status is None or (fr.status.phase == "Pending" and fr.status.datasetRevision is None):
                pending[fr.spec.datasetRef].append(fr)
        for ds_name, requests in pending.items():
            result = await asyncio.to_thread(control.accept_forgets, ds_name, requests)
            for fr in requests:
                if fr.name in result and await self._put_status(fr, result[fr.name]):
                    changed = True
                    _event(fr.to_doc(), reason=fr.status.phase, message=fr.status.message or
                              f"tombstoned in dataset revision {fr.status.datasetRevision}")
        for doc in docs["corrections"]:  # after the forgets: a forgotten sample is not relabelled
            c = await self._parse(Correction, doc)
            st = await asyncio.to_thread(control.apply_correction, c) if c is not None else None
            if st is not None and await self._put_status(c, st):
                changed = True
                _event(doc, reason=st.phase, message=st.message)
        models = [m for m in [await self._parse(ShardedModel, d) for d in docs["shardedmodels"]] if m]
        for m in models:
            if getattr(m.metadata, "deletionTimestamp", None):
                continue  # being deleted: no new Jobs or job requests under a prefix its deletion removes
            changed |= await self.reconcile_model(m, control, datasets.get(m.spec.datasetRef))
        for doc in docs["experiments"]:
            exp = await self._parse(Experiment, doc)
            if exp is not None:
                changed |= await self.reconcile_experiment(exp, models, control)
        for fr in frs:
            same = [m for m in models if m.spec.datasetRef == fr.spec.datasetRef]
            st = await asyncio.to_thread(control.complete_forget, fr, same)
            if st is not None and await self._put_status(fr, st):
                changed = True
                if st.phase == "Complete":
                    _event(fr.to_doc(), reason="Complete", message=st.message)
                    metrics.certified(ns, fr.metadata.creationTimestamp, st.completedAt)
        return changed

    async def _mark_in_use(self, ns: str, docs: dict[str, list[dict[str, Any]]]) -> None:
        """Label each Dataset in use, and only those (see IN_USE)."""
        used = {(d.get("spec") or {}).get("datasetRef") for p in ("shardedmodels", "experiments") for d in docs[p]}
        for d in docs["datasets"]:
            meta = d["metadata"]
            want = "true" if meta["name"] in used else None
            if (meta.get("labels") or {}).get(IN_USE) != want:
                await self.kube.patch_labels("datasets", ns, meta["name"], {IN_USE: want})
                meta.setdefault("labels", {})[IN_USE] = want

    async def reconcile_model(self, m: ShardedModel, control: StoreControl,
                              dataset: Dataset | None | bool = True) -> bool:
        ns = m.namespace
        jobs = await self.kube.jobs_of(ns, m.name)
        obs = await asyncio.to_thread(control.observe_model, m, _liveness(jobs), dataset)
        actions, status = reconcile_model(obs)
        acted = False
        for a in actions:
            acted |= not isinstance(a, (StartJob, Evaluate))  # publish and purge call for another pass
            if isinstance(a, StartJob):
                if a.name in jobs:
                    continue  # exists already (e.g. after a restart): nothing to do
                key = await asyncio.to_thread(control.write_job_request, m, a)
                if await self.kube.create_job(ns, build_training_job(m, a, key, self.trainer(ns))):
                    _event(m.to_doc(), reason="JobCreated",
                              message=f"{a.purpose} shard {a.shard} from slice {a.from_slice} (job {a.name})")
            elif isinstance(a, Publish):
                await asyncio.to_thread(control.publish, m, a.manifest, obs)
                _event(m.to_doc(), reason="Published", message=f"version {a.manifest.version}")
            elif isinstance(a, Purge):
                status.purgedRevision = await asyncio.to_thread(control.purge, m, a.revision, obs)
                _event(m.to_doc(), reason="Purged", message=f"dataset revision {a.revision}")
            elif isinstance(a, Evaluate):
                acc = await asyncio.to_thread(control.evaluation, m, a.version)
                if acc is not None:
                    status.accuracy, status.accuracyVersion = acc, a.version
                    acted = True
                elif evaluation_job_name(m.name, a.version) not in jobs:
                    key = f"{control.layout.model(m.name, m.metadata.uid or 'nouid')}/evals/{a.version:06d}.request.json"
                    control.store.put_json(key, {"namespace": ns, "model": m.name, "uid": m.metadata.uid,
                                                 "version": a.version, "spec": m.spec.model_dump(mode="json")})
                    await self.kube.create_job(ns, build_evaluation_job(m, a.version, key, self.trainer(ns)))
        old_phase = m.status.phase if m.status else None
        changed = await self._put_status(m, status)
        if changed and status.phase != old_phase:
            _event(m.to_doc(), reason=status.phase, message=status.condition("Ready").message
                      if status.condition("Ready") else "")
        return changed or acted

    async def reconcile_experiment(self, exp: Experiment, models: list[ShardedModel], control: StoreControl) -> bool:
        obs = await asyncio.to_thread(control.experiment_inputs, exp, models)
        key = control.layout.experiment_report(exp.name)
        actions, status = reconcile_experiment(exp.name, exp.spec, exp.status, exp.metadata.generation, obs, key)
        for a in actions:
            if isinstance(a, CreateModel):  # its own events bring the next passes
                if await self.kube.create("shardedmodels", exp.namespace,
                                          build_experiment_model_body(exp, build_experiment_model(exp))):
                    _event(exp.to_doc(), reason="ModelCreated", message=f"training ShardedModel {a.name}")
                continue
            model = next(m for m in models if m.name == exp.spec.model_name(exp.name))
            name = experiment_job_name(exp.name, a.model_version)
            if name in await self.kube.jobs_of(exp.namespace, model.name):
                continue  # running already: its completion event brings the next pass
            req = await asyncio.to_thread(control.write_experiment_request, exp, model, a.model_version)
            if await self.kube.create_job(exp.namespace, build_experiment_job(model, exp, a.model_version, req,
                                                                              self.trainer(exp.namespace))):
                _event(exp.to_doc(), reason="JobCreated", message=f"testing version {a.model_version}")
        return await self._put_status(exp, status)

    async def delete_model(self, m: ShardedModel) -> int:
        """storagePolicy Delete: remove the model's objects from the store; Retain keeps them (and the
        record beside its Dataset, so that later forgets purge them too)."""
        if m.spec.storagePolicy != "Delete":
            return 0
        async with _locks[m.namespace]:  # not while a pass of its namespace may write under the model's prefix
            store = await self.store_for(m.namespace)
            control = StoreControl(store, m.namespace)
            prefix = control.layout.model(m.name, m.metadata.uid or "nouid") + "/"
            n = len(await asyncio.to_thread(store.delete_prefix, prefix))
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


def _event(obj: dict[str, Any], reason: str, message: str) -> None:
    """An Event on the object (kubectl describe), and the same line in the operator's log (kubectl logs)."""
    try:
        kopf.info(obj, reason=reason, message=message)
    except LookupError:  # outside kopf's handler context (no event queue): the log line below stands for it
        pass
    meta = obj.get("metadata") or {}
    log.info(f"{str(obj.get('kind', '')).lower()}/{meta.get('namespace')}/{meta.get('name')}: {reason}: {message}")


def _liveness(jobs: dict[str, dict[str, Any]]) -> Callable[[str, dict], str | None]:
    """Job state from the API server, the result from the store (the trainer writes it)."""
    def state(name: str, st: dict) -> str | None:
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


def _failed(res: Dataset, msg: str) -> DatasetStatus:
    st = (res.status or DatasetStatus()).model_copy(deep=True)
    st.phase, st.message = "Failed", msg
    st.set_condition("Ready", "False", "InvalidSpec", msg)
    return st


__all__ = ["Body", "ShardwiseError"]
