"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager.

What controller-runtime's envtest gives Go operators: the real API server (structural schemas,
CEL rules, RBAC, resourceVersions, watches, finalizers, the status subresource) and the real
controllers (Job -> Pods, garbage collection, tokens). No kubelet and no scheduler: Pods stay
Pending until a test plays the kubelet (tests/cluster/kubelet.py).

The binaries come from KUBEBUILDER_ASSETS (envtest's convention: a folder with etcd,
kube-apiserver and kube-controller-manager) or from the workplace's ../shared/k8s (unpacked
by its `control-plane assets DIR`; etcd from Debian's etcd-server). `find_assets` says why
when neither is there.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "k8s" / "control-plane"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")


def find_assets(workdir: Path) -> Path | str:
    """The folder with the three binaries, or why there is none."""
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        missing = [b for b in BINARIES if not (Path(env) / b).exists()]
        return Path(env) if not missing else f"KUBEBUILDER_ASSETS={env} lacks {', '.join(missing)}"
    if not SHARED.exists():
        return f"no control plane: set KUBEBUILDER_ASSETS (setup-envtest use 1.36) or provide {SHARED}"
    if shutil.which("etcd") is None:
        return "no etcd: apt-get install etcd-server (.ci/run does)"
    out = subprocess.run([str(SHARED), "assets", str(workdir)], capture_output=True, text=True)
    if out.returncode != 0:
        return f"{SHARED} assets failed: {out.stderr.strip()[-300:]}"
    return Path(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ControlPlane:
    workdir: Path
    bin: Path
    url: str = ""
    token: str = ""
    people: dict[str, str] = field(default_factory=dict)  # user name -> bearer token
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def start(self) -> ControlPlane:
        d = self.workdir
        for sub in ("etcd", "certs", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        key = d / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(d / "sa.pub")], check=True,
                       capture_output=True)
        self.token = secrets.token_hex(16)
        # people of the tests (static tokens): RBAC gives them nothing until a test binds them a role
        self.people = {name: secrets.token_hex(16) for name in PEOPLE}
        (d / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n" + "".join(
            f"{tok},{name},{name}\n" for name, tok in self.people.items()))
        ec, ep, api, kcm = (_free_port() for _ in range(4))
        self._run("etcd", ["--data-dir", str(d / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{ec}",
                           "--advertise-client-urls", f"http://127.0.0.1:{ec}",
                           "--listen-peer-urls", f"http://127.0.0.1:{ep}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{ep}",
                           "--initial-cluster", f"default=http://127.0.0.1:{ep}"])
        self._run("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{ec}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api}", f"--cert-dir={d / 'certs'}", f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={key}",
            "--service-cluster-ip-range=10.96.0.0/16"])
        self.url = f"https://127.0.0.1:{api}"
        self.kubeconfig.write_text(kubeconfig(self.url, self.token, "admin"))
        deadline = time.monotonic() + 90
        while not self._ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"kube-apiserver did not get ready; see {d / 'logs'}")
            time.sleep(0.3)
        self._run("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", f"--service-account-private-key-file={key}",
            f"--root-ca-file={d / 'certs' / 'apiserver.crt'}", "--controllers=*", "--bind-address=127.0.0.1",
            f"--secure-port={kcm}"])
        return self

    def _run(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def _ready(self) -> bool:
        req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=ssl._create_unverified_context(), timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        for p in reversed(self.procs):  # controllers, then the API server, then etcd
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


PEOPLE = ("alice", "bob")


def people_kubeconfig(url: str, people: dict[str, str], current: str) -> str:
    """One kubeconfig with a context per person (named as the person), as a laptop's would hold."""
    users = ", ".join(f"{{name: {n}, user: {{token: \"{t}\"}}}}" for n, t in people.items())
    contexts = ", ".join(f"{{name: {n}, context: {{cluster: local, user: {n}}}}}" for n in people)
    return (f"apiVersion: v1\nkind: Config\nclusters: [{{name: local, cluster: {{server: \"{url}\", "
            f"insecure-skip-tls-verify: true}}}}]\nusers: [{users}]\ncontexts: [{contexts}]\n"
            f"current-context: {current}\n")


def kubeconfig(url: str, token: str, user: str) -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters: [{{name: local, cluster: {{server: \"{url}\", "
            f"insecure-skip-tls-verify: true}}}}]\nusers: [{{name: {user}, user: {{token: \"{token}\"}}}}]\n"
            f"contexts: [{{name: local, context: {{cluster: local, user: {user}}}}}]\ncurrent-context: local\n")
