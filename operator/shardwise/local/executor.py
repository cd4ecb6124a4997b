"""Run trainer jobs as local processes: the local stand-in for batch/v1 Jobs.

Each job runs the trainer entrypoint (`shardwise_trainer train|evaluate --store --request`, the
very command a Kubernetes Job runs) in a process of its own. Like a Job's podFailurePolicy, exit code
2 (bad configuration) fails at once and other failures are retried up to `retries` times.

The processes are forked from a multiprocessing forkserver that has imported torch and the
trainer once: a job then starts in milliseconds instead of paying ~3 s of imports (torch, and the
inductor that deterministic mode loads) every time. Each job still is its own process, with its own
exit code and log, that dies with its reconciler; it gets the environment and working directory the
reconciler has when it starts the job.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_BAD_CONFIG = 2
# what the forkserver imports once, so that every job forked from it starts warm. torch._inductor:
# torch.use_deterministic_algorithms() imports it (and dynamo) on first use, about 3 s on 2 cores.
PRELOAD = ["torch", "torch._inductor", "shardwise_trainer.__main__", "shardwise_trainer.train",
           "shardwise_trainer.evaluate", "shardwise.store.s3", "shardwise.datasets"]


def _die_with_parent() -> None:
    """In the child: be killed when its parent dies, as a Job's pods would be on a lost node.

    The parent is the forkserver, which exits when the reconciler does (its pipe to the
    reconciler closes): a reconciler killed mid-run (Ctrl-C twice, OOM, SIGKILL) leaves no
    orphan trainer writing behind the back of the next run, which restarts interrupted jobs itself.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the signal was armed
            os._exit(137)


def _run_job(command: str, store_uri: str, request_key: str, log_path: str, env: dict[str, str], cwd: str) -> None:
    """The job's process: the trainer entrypoint with the reconciler's environment, output to the log."""
    _die_with_parent()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from shardwise_trainer.__main__ import main

    sys.exit(main([command, "--store", store_uri, "--request", request_key]))


@contextmanager
def _main_module_hidden():
    """While a job process is created: multiprocessing would have the child import the parent's
    __main__ (to unpickle things defined there). A job needs nothing from it (its target and
    arguments are importable), and importing it would run an unguarded script's top level once
    more in every trainer, or fail for code read from stdin. So __main__'s spec and file are
    hidden for that moment, which is how multiprocessing treats an interactive session."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _context() -> Any:  # a forkserver or spawn context (typeshed's BaseContext has no Process)
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")  # no fork here: each job imports torch itself


@dataclass
class _Proc:
    name: str
    request_key: str
    process: multiprocessing.process.BaseProcess
    started: float
    log: Path
    own_log: bool  # a temporary log (no log_dir): removed once read
    attempt: int = 1
    command: str = "train"  # the trainer's subcommand: train, or evaluate (a model version, an Experiment)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self) -> int | None:
        """The exit code, None while it runs (negative: killed by that signal)."""
        return self.process.exitcode


@dataclass
class Finished:
    name: str
    exit_code: int
    seconds: float
    log_tail: str = ""


@dataclass
class LocalExecutor:
    store_uri: str
    parallel: int = 2
    retries: int = 2
    log_dir: Path | None = None
    log: Callable[[str], None] = lambda m: None
    procs: dict[str, _Proc] = field(default_factory=dict)

    def running(self) -> set[str]:
        return set(self.procs)

    def has_room(self) -> bool:
        return len(self.procs) < self.parallel

    def start(self, name: str, request_key: str, attempt: int = 1) -> None:
        """A training job (`shardwise_trainer train`)."""
        self.spawn(name, request_key, "train", attempt)

    def spawn(self, name: str, request_key: str, command: str, attempt: int = 1) -> None:
        """The trainer entrypoint's `command` on a request, as a process of its own."""
        if name in self.procs:
            return  # idempotent: the same job is never started twice
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log, own = self.log_dir / f"{name}.log", False
        else:
            fd, path = tempfile.mkstemp(prefix=f"shardwise-{name}-", suffix=".log")
            os.close(fd)
            log, own = Path(path), True
        proc = _CONTEXT.Process(target=_run_job, name=f"trainer {name}", daemon=False,
                                args=(command, self.store_uri, request_key, str(log), dict(os.environ), os.getcwd()))
        with _main_module_hidden():
            proc.start()
        self.procs[name] = _Proc(name, request_key, proc, time.perf_counter(), log, own, attempt, command)

    def poll(self) -> list[Finished]:
        done: list[Finished] = []
        for name, p in list(self.procs.items()):
            rc = p.poll()
            if rc is None:
                continue
            del self.procs[name]
            p.process.join()
            tail = p.log.read_text(errors="replace")[-2000:] if p.log.exists() else ""
            if p.own_log:
                p.log.unlink(missing_ok=True)
            if rc not in (0, EXIT_BAD_CONFIG) and p.attempt <= self.retries:
                last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "no output")
                self.log(f"job {name}: trainer exited {rc} ({last.strip()[:200]}); "
                         f"starting it again (attempt {p.attempt + 1} of {self.retries + 1})")
                if p.command == "train":
                    self.start(name, p.request_key, p.attempt + 1)
                else:
                    self.spawn(name, p.request_key, p.command, p.attempt + 1)
                continue
            done.append(Finished(name, rc, time.perf_counter() - p.started, tail))
        return done

    def wait(self, timeout: float) -> None:
        """Until a job exits, or `timeout` seconds."""
        if self.procs:
            multiprocessing.connection.wait([p.process.sentinel for p in self.procs.values()], timeout)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.process.terminate()
        for p in self.procs.values():
            p.process.join(5)
            if p.process.exitcode is None:
                p.process.kill()
                p.process.join()
            if p.own_log:
                p.log.unlink(missing_ok=True)
        self.procs.clear()


_CONTEXT = _context()
