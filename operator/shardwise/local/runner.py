"""The local body: reconcile every resource of a namespace until nothing is left to do.

It lists resources from the local registry, runs trainer jobs as processes, and
lets StoreControl carry out the brain's decisions. It decides nothing itself.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shardwise.api import Correction, Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.brain.experiment import CreateModel, build_experiment_model, reconcile_experiment
from shardwise.brain.model import Evaluate, Publish, Purge, StartJob, reconcile_model
from shardwise.control import StoreControl
from shardwise.datasets import DatasetView
from shardwise.local.executor import LocalExecutor
from shardwise.local.registry import Registry
from shardwise.store.base import Store

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class LocalRunner:
    store: Store
    namespace: str = "default"
    parallel: int = 2
    log: Log = _stderr
    log_dir: Path | None = None
    executor: LocalExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.store, self.namespace)
        self.control = StoreControl(self.store, self.namespace, self.log)
        self.executor = LocalExecutor(self.store.uri, self.parallel, log_dir=self.log_dir, log=self.log)
        self._exits: dict[str, tuple[int, str]] = {}
        self._slices_seen: dict[tuple[str, str], int] = {}

    def view(self, name: str, revision: int | None = None) -> DatasetView:
        return self.control.view(name, revision)

    # -- the loop -------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> None:
        """Reconcile until idle: no job running and a pass that changed nothing."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            while True:
                self.poll()
                changed = self.step()
                if not changed and not self.executor.procs:
                    return
                if deadline is not None and time.perf_counter() > deadline:
                    raise TimeoutError(f"reconcile did not settle within {timeout} s")
                if not changed:
                    self.executor.wait(0.5)
        finally:
            self.executor.stop_all()

    def poll(self) -> None:
        """Collect trainer processes that exited; call before step() when driving the loop by hand."""
        for f in self.executor.poll():
            self._exits[f.name] = (f.exit_code, f.log_tail)

    def step(self) -> bool:
        changed = False
        for ds in self.registry.list(Dataset):
            changed |= self._put(ds, self.control.reconcile_dataset(ds))
        pending: dict[str, list[ForgetRequest]] = {}
        for fr in self.registry.list(ForgetRequest):
            if fr.status is None or (fr.status.phase == "Pending" and fr.status.datasetRevision is None):
                pending.setdefault(fr.spec.datasetRef, []).append(fr)
        for ds_name, requests in pending.items():
            by_name = {fr.name: fr for fr in requests}
            for name, st in self.control.accept_forgets(ds_name, requests).items():
                changed |= self._put(by_name[name], st)
        for c in self.registry.list(Correction):
            st = self.control.apply_correction(c)
            if st is not None:
                changed |= self._put(c, st)
        datasets = {d.name: d for d in self.registry.list(Dataset)}
        for m in self.registry.list(ShardedModel):
            changed |= self.reconcile_model(m, datasets.get(m.spec.datasetRef))
        models = self.registry.list(ShardedModel)
        for exp in self.registry.list(Experiment):
            changed |= self.reconcile_experiment(exp, models)
        for fr in self.registry.list(ForgetRequest):
            st = self.control.complete_forget(fr, [m for m in models if m.spec.datasetRef == fr.spec.datasetRef])
            if st is not None:
                changed |= self._put(fr, st)
        return changed

    def _put(self, res, status) -> bool:
        """Persist a status when it differs (ignoring condition timestamps)."""
        if status.same_as(res.status):
            return False
        res.status = status
        self.registry.put_status(res)
        return True

    # -- models -----------------------------------------------------------------------
    def _liveness(self, name: str, st: dict):
        if name in self.executor.procs:
            return "running"
        if st.get("state") in ("succeeded", "failed"):
            return st["state"]
        if name in self._exits:  # died without writing its status
            code, tail = self._exits[name]
            st["message"] = f"trainer exited with code {code}: {(tail.strip().splitlines() or [''])[-1]}"
            return "failed"
        return None  # interrupted by a restart: the brain will start it again

    def reconcile_model(self, m: ShardedModel, dataset: Dataset | None | bool = True) -> bool:
        obs = self.control.observe_model(m, self._liveness, dataset)
        self._progress(m, obs.jobs)
        actions, status = reconcile_model(obs)
        acted = False
        for a in actions:
            if isinstance(a, StartJob):
                if self.executor.has_room() and a.name not in self.executor.procs:
                    self._exits.pop(a.name, None)
                    self.executor.start(a.name, self.control.write_job_request(m, a))
                    acted = True
            elif isinstance(a, Publish):
                self.control.publish(m, a.manifest, obs)
                acted = True
            elif isinstance(a, Purge):
                status.purgedRevision = self.control.purge(m, a.revision, obs)
                acted = True
            elif isinstance(a, Evaluate):
                status.accuracy = self.evaluate(m, a.version)
                status.accuracyVersion = a.version
                acted = True
        if m.status is None or status.phase != m.status.phase:
            self.log(f"shardedmodel/{m.name}: {status.phase} ({status.shardsReadyText} shards ready)")
        return self._put(m, status) or acted

    def _progress(self, m: ShardedModel, jobs) -> None:
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

    def reconcile_experiment(self, exp: Experiment, models: list[ShardedModel]) -> bool:
        from shardwise_trainer.evaluate import evaluate_version

        obs = self.control.experiment_inputs(exp, models)
        key = self.control.layout.experiment_report(exp.name)
        actions, status = reconcile_experiment(exp.name, exp.spec, exp.status, exp.metadata.generation, obs, key)
        for a in actions:
            if isinstance(a, CreateModel):  # trained by the model loop from the next pass on
                self.registry.apply(build_experiment_model(exp))
                self.log(f"experiment/{exp.name}: created shardedmodel/{a.name} to train")
                continue
            # the evaluation Job's code, in-process (the kube body runs it as a Job)
            model = next(m for m in models if m.name == exp.spec.model_name(exp.name))
            request = self.store.get_json(self.control.write_experiment_request(exp, model, a.model_version))
            evaluate_version(self.store, request)
        return self._put(exp, status) or bool(actions)

    def evaluate(self, m: ShardedModel, version: int) -> float | None:
        """Runs the evaluation Job's code in-process (the kube body runs it as a Job)."""
        from shardwise_trainer.evaluate import evaluate_version

        acc = evaluate_version(self.store, {"namespace": self.namespace, "model": m.name, "uid": m.metadata.uid,
                                            "version": version, "spec": m.spec.model_dump(mode="json")})["accuracy"]
        self.log(f"shardedmodel/{m.name}: version {version} held-out accuracy "
                 + ("n/a" if acc is None else f"{acc:.4f}"))
        return acc
