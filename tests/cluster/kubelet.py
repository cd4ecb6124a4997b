"""The test's kubelet: the control plane has none, so Pods the Job controller creates stay Pending.

This plays the kubelet's part for one namespace: it runs each new Pod's container args with the
real trainer entrypoint (`python -m shardwise_trainer ...`) in a subprocess, with the env the Pod
spec gives (values, and keys of Secrets read through the API, as a kubelet resolves
secretKeyRef), then writes the container's exit through the Pod's status subresource. The Job
controller then does the rest as in a cluster: completions, backoffLimit, podFailurePolicy.
`exit_codes` lets a test make a Pod exit with a code of its choosing instead of running it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.cluster.kube import ApiError, Kube


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet(threading.Thread):
    def __init__(self, kube: Kube, ns: str, exit_codes: Callable[[dict], int | None] = lambda pod: None,
                 workers: int = 1):
        """workers: Pods run at once (a node's cores)."""
        super().__init__(daemon=True)
        self.kube, self.ns, self.exit_codes = kube, ns, exit_codes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pod")
        self.ran: list[str] = []  # pod names, in the order run
        self.errors: list[str] = []
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self) -> None:
        seen: set[str] = set()
        while not self._halt.is_set():
            try:
                pods = self.kube.get(f"/api/v1/namespaces/{self.ns}/pods")["items"]
            except (ApiError, OSError) as e:
                self.errors.append(str(e))
                time.sleep(0.5)
                continue
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if uid in seen or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
                    continue
                seen.add(uid)
                self._pool.submit(self._run_reporting, pod)
            time.sleep(0.2)

    def _run_reporting(self, pod: dict) -> None:
        try:
            self._run_pod(pod)
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            self.errors.append(f"{pod['metadata']['name']}: {type(e).__name__}: {e}")

    def _env(self, container: dict) -> dict[str, str]:
        env = dict(os.environ)
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                secret = self.kube.get(f"/api/v1/namespaces/{self.ns}/secrets/{ref['name']}")
                env[e["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        return env

    def _run_pod(self, pod: dict) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        started = _now()
        code = self.exit_codes(pod)
        if code is None:
            proc = subprocess.run([sys.executable, "-m", "shardwise_trainer", *container.get("args", [])],
                                  env=self._env(container), capture_output=True, timeout=600)
            code = proc.returncode
            if code:
                self.errors.append(f"{name} exited {code}: {proc.stderr.decode(errors='replace')[-500:]}")
        self.ran.append(name)
        state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "startedAt": started, "finishedAt": _now()}}
        self.kube.request("PATCH", f"/api/v1/namespaces/{self.ns}/pods/{name}/status", {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                                   "ready": False, "restartCount": 0, "state": state}]}},
            "application/merge-patch+json")
