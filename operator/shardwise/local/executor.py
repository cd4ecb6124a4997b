"""Run trainer jobs as local processes: the local stand-in for batch/v1 Jobs.

Each job runs the trainer entrypoint, the very command a Kubernetes Job runs.
Like a Job's podFailurePolicy, exit code 2 (bad configuration) fails at once and
other failures are retried up to `retries` times.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

EXIT_BAD_CONFIG = 2


def _die_with_parent() -> None:
    """In the child: be killed when the reconciler dies, as a Job's pods would be on a lost node.

    A reconciler killed mid-run (Ctrl-C twice, OOM, SIGKILL) must not leave orphan trainers
    writing behind the back of the next run, which restarts interrupted jobs itself.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Proc:
    name: str
    request_key: str
    popen: subprocess.Popen
    started: float
    attempt: int = 1
    log: Path | None = None


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
        if name in self.procs:
            return  # idempotent: the same job is never started twice
        cmd = [sys.executable, "-m", "shardwise_trainer", "train", "--store", self.store_uri, "--request", request_key]
        log = None
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{name}.log"
            out = log.open("ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                             # the death signal follows the spawning *thread*: only tie it to the main one
                             preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread()
                             else None)
        self.procs[name] = _Proc(name, request_key, p, time.perf_counter(), attempt, log)

    def poll(self) -> list[Finished]:
        done: list[Finished] = []
        for name, p in list(self.procs.items()):
            rc = p.popen.poll()
            if rc is None:
                continue
            del self.procs[name]
            tail = ""
            if p.log is not None and p.log.exists():
                tail = p.log.read_text(errors="replace")[-2000:]
            elif p.popen.stderr is not None:
                tail = p.popen.stderr.read().decode(errors="replace")[-2000:]
            if rc not in (0, EXIT_BAD_CONFIG) and p.attempt <= self.retries:
                last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "no output")
                self.log(f"job {name}: trainer exited {rc} ({last.strip()[:200]}); "
                         f"starting it again (attempt {p.attempt + 1} of {self.retries + 1})")
                self.start(name, p.request_key, p.attempt + 1)
                continue
            done.append(Finished(name, rc, time.perf_counter() - p.started, tail))
        return done

    def wait(self, timeout: float) -> None:
        end = time.perf_counter() + timeout
        while self.procs and time.perf_counter() < end:
            if any(p.popen.poll() is not None for p in self.procs.values()):
                return
            time.sleep(0.02)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.popen.terminate()
        for p in self.procs.values():
            try:
                p.popen.wait(5)
            except subprocess.TimeoutExpired:
                p.popen.kill()
        self.procs.clear()
