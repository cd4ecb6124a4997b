"""The reconcile pass of one namespace, written once and run by both bodies.

Order: Datasets (ingest), pending ForgetRequests (one revision per Dataset), Corrections (after the
forgets: a forgotten sample is not relabelled), ShardedModels, Experiments, then the completions of
ForgetRequests. Each step asks the brain (pure) what to do, has StoreControl carry it out on the
store, and has the body's executor start work. A body supplies its resources and executor (ports.py)
and keeps one NamespaceReconciler per namespace, so the store, the dataset cache and what it has
logged stay across passes.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from shardwise.api import Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.dataset import DatasetStatus
from shardwise.brain.experiment import CreateModel, build_experiment_model, experiment_job_name, reconcile_experiment
from shardwise.brain.model import Evaluate, Publish, Purge, StartJob, evaluation_job_name, reconcile_model
from shardwise.brain.versions import JobRecord
from shardwise.control import StoreControl
from shardwise.reconcile.ports import Executor, Resources

Log = Callable[[str], None]


def _run(fn, *args):
    """Store work off the event loop (the kube body serves other handlers meanwhile)."""
    return asyncio.to_thread(fn, *args)


class NamespaceReconciler:
    def __init__(self, control: StoreControl, resources: Resources, executor: Executor, log: Log):
        self.control, self.resources, self.executor, self.log = control, resources, executor, log
        self._slices_seen: dict[tuple[str, str], int] = {}

    async def run_pass(self) -> bool:
        """One pass over the namespace; True when it changed something (another pass may follow on)."""
        snap = await self.resources.snapshot()
        changed = await self._datasets(snap.datasets)
        changed |= await self._accept_forgets(snap.forgets)
        changed |= await self._corrections(snap)
        for m in snap.models:
            if getattr(m.metadata, "deletionTimestamp", None):
                continue  # being deleted: no new work or job requests under a prefix its deletion removes
            changed |= await self.reconcile_model(m, snap.datasets.get(m.spec.datasetRef))
        for exp in snap.experiments:
            changed |= await self.reconcile_experiment(exp, snap.models)
        changed |= await self._complete_forgets(snap.forgets, snap.models)
        return changed

    # -- datasets, forgets, corrections -------------------------------------------------------------
    async def _datasets(self, datasets: dict[str, Dataset | None]) -> bool:
        changed = False
        for ds in datasets.values():
            if ds is None:
                continue
            access = await self.resources.source_access(ds)
            if access.refusal:
                changed |= await self.resources.put_status(ds, _failed(ds, access.refusal))
                continue
            st = await _run(self.control.reconcile_dataset, ds, access.opener)
            if await self.resources.put_status(ds, st):
                changed = True
                self.resources.event(ds, st.phase, st.message or f"revision {st.revision}")
        return changed

    async def _accept_forgets(self, forgets: list[ForgetRequest]) -> bool:
        changed = False
        pending: dict[str, list[ForgetRequest]] = defaultdict(list)
        for fr in forgets:
            if fr.status is None or (fr.status.phase == "Pending" and fr.status.datasetRevision is None):
                pending[fr.spec.datasetRef].append(fr)
        for ds_name, requests in pending.items():
            result = await _run(self.control.accept_forgets, ds_name, requests)
            for fr in requests:
                st = result.get(fr.name)
                if st is not None and await self.resources.put_status(fr, st):
                    changed = True
                    self.resources.event(fr, st.phase,
                                         st.message or f"tombstoned in dataset revision {st.datasetRevision}")
        return changed

    async def _corrections(self, snap) -> bool:
        changed = False
        for c in snap.corrections:
            st = await _run(self.control.apply_correction, c)
            if st is not None and await self.resources.put_status(c, st):
                changed = True
                self.resources.event(c, st.phase, st.message)
        return changed

    async def _complete_forgets(self, forgets: list[ForgetRequest], models: list[ShardedModel]) -> bool:
        changed = False
        for fr in forgets:
            same = [m for m in models if m.spec.datasetRef == fr.spec.datasetRef]
            st = await _run(self.control.complete_forget, fr, same)
            if st is not None and await self.resources.put_status(fr, st):
                changed = True
                if st.phase == "Complete":
                    self.resources.event(fr, "Complete", st.message)
                    self.resources.certified(fr)
        return changed

    # -- models ------------------------------------------------------------------------------------
    async def reconcile_model(self, m: ShardedModel, dataset: Dataset | None | bool = True) -> bool:
        """dataset: its Dataset resource (None: none of that name, or one whose spec is invalid; True: not
        said, the store alone decides)."""
        work = await self.executor.work_of(m)
        obs = await _run(self.control.observe_model, m, work.liveness, dataset)
        self._progress(m, obs.jobs)
        actions, status = reconcile_model(obs)
        acted = False  # started work calls for no pass of its own: its completion does
        for a in actions:
            if isinstance(a, StartJob):
                if work.started(a.name) or not work.has_room():
                    continue  # exists already (e.g. after a restart), or no room yet: a later pass
                key = await _run(self.control.write_job_request, m, a)
                if await self.executor.start_training(m, a, key):
                    self.resources.event(m, "JobCreated",
                                         f"{a.purpose} shard {a.shard} from slice {a.from_slice} (job {a.name})")
            elif isinstance(a, Publish):
                await _run(self.control.publish, m, a.manifest, obs)
                self.resources.event(m, "Published", f"version {a.manifest.version}")
                acted = True
            elif isinstance(a, Purge):
                status.purgedRevision = await _run(self.control.purge, m, a.revision, obs)
                self.resources.event(m, "Purged", f"dataset revision {a.revision}")
                acted = True
            elif isinstance(a, Evaluate):
                acted |= await self._evaluate(m, a.version, status, work)
        old_phase = m.status.phase if m.status else None
        changed = await self.resources.put_status(m, status)
        if changed and status.phase != old_phase:
            ready = status.condition("Ready")
            self.resources.event(m, status.phase, f"{status.shardsReadyText} shards ready"
                                 + (f": {ready.message}" if ready and ready.message else ""))
        return changed or acted

    async def _evaluate(self, m: ShardedModel, version: int, status, work) -> bool:
        """The published version's held-out accuracy: read once the evaluation wrote it, else started."""
        done = await _run(self.control.evaluation, m, version)
        if done is not None:
            (acc,) = done
            status.accuracy, status.accuracyVersion = acc, version
            self.log(f"shardedmodel/{m.name}: version {version} held-out accuracy "
                     + ("n/a (no test samples)" if acc is None else f"{acc:.4f}"))
            return True
        name = evaluation_job_name(m.name, version)
        if not work.started(name):
            key = await _run(self.control.write_evaluation_request, m, version)
            await self.executor.start_evaluation(m, name, version, key)
        return False

    def _progress(self, m: ShardedModel, jobs: list[JobRecord]) -> None:
        """One line per slice a running trainer finished (from its status in the store)."""
        for j in jobs:
            if j.state != "running" or not j.slices_done:
                continue
            key = (m.name, j.name)
            if self._slices_seen.get(key, 0) < j.slices_done:
                self._slices_seen[key] = j.slices_done
                done = j.from_slice + j.slices_done
                self.log(f"shardedmodel/{m.name}: shard {j.shard} slice {done - 1} trained "
                         f"({done}/{m.spec.slices}, job {j.name})")

    # -- experiments -------------------------------------------------------------------------------
    async def reconcile_experiment(self, exp: Experiment, models: list[ShardedModel]) -> bool:
        obs = await _run(self.control.experiment_inputs, exp, models)
        key = self.control.layout.experiment_report(exp.name)
        actions, status = reconcile_experiment(exp.name, exp.spec, exp.status, exp.metadata.generation, obs, key)
        for a in actions:
            if isinstance(a, CreateModel):  # trained by the model step from the next pass on
                if await self.resources.create_model(exp, build_experiment_model(exp)):
                    self.resources.event(exp, "ModelCreated", f"training ShardedModel {a.name}")
                continue
            model = next(m for m in models if m.name == exp.spec.model_name(exp.name))
            name = experiment_job_name(exp.name, a.model_version)
            if (await self.executor.work_of(model)).started(name):
                continue  # running already: its completion brings the next pass
            req = await _run(self.control.write_experiment_request, exp, model, a.model_version)
            if await self.executor.start_experiment(exp, model, name, a.model_version, req):
                self.resources.event(exp, "JobCreated", f"testing version {a.model_version}")
        return await self.resources.put_status(exp, status)


def _failed(res: Dataset, msg: str) -> DatasetStatus:
    st = (res.status or DatasetStatus()).model_copy(deep=True)
    st.phase, st.message = "Failed", msg
    st.set_condition("Ready", "False", "InvalidSpec", msg)
    return st
