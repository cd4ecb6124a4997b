"""The local body: reconcile every resource of a namespace until nothing is left to do.

The pass is reconcile/namespace.py, the same one the kube body runs; this module supplies it with
resources (the registry in the store) and an executor (trainer processes: training, evaluation and
Experiment runs, each through the trainer entrypoint a Job runs). It decides nothing itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shardwise.api import Correction, Dataset, Experiment, ForgetRequest, ShardedModel
from shardwise.api.common import Resource, StatusBase
from shardwise.brain.model import StartJob
from shardwise.brain.versions import JobState
from shardwise.control import StoreControl
from shardwise.datasets import DatasetView
from shardwise.local.executor import LocalExecutor
from shardwise.local.registry import Registry
from shardwise.reconcile.namespace import NamespaceReconciler
from shardwise.reconcile.ports import Snapshot, SourceAccess
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
        self._tests: set[str] = set()  # evaluation and Experiment runs started (not training)
        self.reconciler = NamespaceReconciler(self.control, RegistryResources(self), ProcessExecutor(self), self.log)

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
        """One pass over the namespace; True when it changed something."""
        return asyncio.run(self.reconciler.run_pass())


class RegistryResources:
    """The pass's resources from the local registry (statuses written to the store)."""

    def __init__(self, runner: LocalRunner):
        self.runner = runner

    async def snapshot(self) -> Snapshot:
        reg = self.runner.registry
        return Snapshot(datasets={d.name: d for d in reg.list(Dataset)}, forgets=reg.list(ForgetRequest),
                        corrections=reg.list(Correction), models=reg.list(ShardedModel),
                        experiments=reg.list(Experiment))

    async def put_status(self, res: Resource, status: StatusBase) -> bool:
        if status.same_as(res.status):
            return False
        res.status = status
        self.runner.registry.put_status(res)
        return True

    async def create_model(self, owner: Experiment, model: ShardedModel) -> bool:
        self.runner.registry.apply(model)
        return True

    async def source_access(self, ds: Dataset) -> SourceAccess:
        return SourceAccess()  # read with this process's environment (files, or s3:// with its keys)

    def event(self, res: Resource, reason: str, message: str) -> None:
        # StoreControl has logged each store step already; a model's new phase and an Experiment's own
        # model are the events it cannot see
        if isinstance(res, ShardedModel) and res.status is not None and reason == res.status.phase:
            self.runner.log(f"shardedmodel/{res.name}: {reason} ({message})")
        elif reason == "ModelCreated":
            self.runner.log(f"experiment/{res.name}: {message.lower()}")

    def certified(self, fr: ForgetRequest) -> None:
        pass


class ProcessExecutor:
    """Work as trainer processes of this machine (LocalExecutor: a few at a time, retried like Jobs)."""

    def __init__(self, runner: LocalRunner):
        self.runner = runner

    async def work_of(self, m: ShardedModel) -> ProcessWork:
        return ProcessWork(self.runner)

    async def start_training(self, m: ShardedModel, job: StartJob, request_key: str) -> bool:
        self.runner._exits.pop(job.name, None)
        self.runner.executor.start(job.name, request_key)
        return True

    async def start_evaluation(self, m: ShardedModel, name: str, version: int, request_key: str) -> bool:
        return self._test(name, request_key)

    async def start_experiment(self, exp: Experiment, m: ShardedModel, name: str, version: int,
                               request_key: str) -> bool:
        return self._test(name, request_key)

    def _test(self, name: str, request_key: str) -> bool:
        self.runner._exits.pop(name, None)
        self.runner._tests.add(name)
        self.runner.executor.spawn(name, request_key, "evaluate")
        return True


class ProcessWork:
    def __init__(self, runner: LocalRunner):
        self.runner = runner

    def liveness(self, name: str, st: dict) -> JobState | None:
        if name in self.runner.executor.procs:
            return "running"
        if st.get("state") in ("succeeded", "failed"):
            return st["state"]
        if name in self.runner._exits:  # died without writing its status
            code, tail = self.runner._exits[name]
            st["message"] = f"trainer exited with code {code}: {(tail.strip().splitlines() or [''])[-1]}"
            return "failed"
        return None  # interrupted by a restart: the brain will start it again

    def started(self, name: str) -> bool:
        """Running, or failed for good (as a failed Job stays, until this runner ends); a training job the
        brain starts again is let through (its exit is cleared when it starts)."""
        if name in self.runner.executor.procs:
            return True
        return name in self.runner._tests and self.runner._exits.get(name, (0, ""))[0] != 0

    def has_room(self) -> bool:
        return self.runner.executor.has_room()

