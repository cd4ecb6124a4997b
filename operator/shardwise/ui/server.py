"""`shardwise ui`: the annotation page over HTTP, on the standard library only.

One page (static/index.html, vanilla JS, no external URLs) and a JSON API:

    GET  /api/experiments                 Experiments with a report, and the default one
    GET  /api/info?experiment=E           what the page shows: model version, dataset revisions, changes
    GET  /api/items?view=candidates|errors|browse&label=&shard=&minScore=&offset=&limit=&fixed=
    GET  /api/thumb?dataset=D&id=X        a PNG thumbnail of an image sample
    POST /api/actions                     {"id", "action": "relabel"|"drop", "label"?, "experiment"?}

It binds 127.0.0.1 by default: anyone who can reach it edits labels as --user. Actions refuse
requests that a foreign web page could forge (a Host that is not this server, a foreign Origin,
a body that is not JSON), since a browser on this machine can reach 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shardwise.errors import ShardwiseError
from shardwise.store.base import Store
from shardwise.ui.api import Annotator, ApiError
from shardwise.ui.fixes import Fixes

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'")
MAX_BODY = 64 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class UiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, annotator: Annotator, host: str = "127.0.0.1", port: int = 8765):
        self.annotator = annotator
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def allowed_hosts(self) -> set[str] | None:
        """Host headers accepted on a loopback bind; None (any) on another address, where names vary."""
        host, port = str(self.server_address[0]), self.server_address[1]
        return {f"{n}:{port}" for n in LOOPBACK} if host in LOOPBACK else None


class Handler(BaseHTTPRequestHandler):
    server: UiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # actions are logged by StoreControl; request lines would drown them

    # -- routing ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        a = self.server.annotator
        try:
            self._check_host()
            if url.path in ("/", "/index.html"):
                return self._static("index.html")
            if url.path.startswith("/static/"):
                return self._static(url.path[len("/static/"):])
            if url.path == "/api/experiments":
                return self._json(200, a.experiments())
            if url.path == "/api/info":
                return self._json(200, a.info(params))
            if url.path == "/api/items":
                return self._json(200, a.items(params))
            if url.path == "/api/thumb":
                return self._send(200, a.thumb(params), "image/png", cache="private, max-age=300")
            raise ApiError(404, f"path: no such page or API {url.path!r}", "path")
        except Exception as e:  # noqa: BLE001 (every failure becomes a JSON message the page can show)
            self._error(e)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path != "/api/actions":
                raise ApiError(404, f"path: no such API {url.path!r}", "path")
            self._check_host()
            self._check_same_origin()
            self._json(200, self.server.annotator.act(self._body()))
        except Exception as e:  # noqa: BLE001
            self.close_connection = True  # an unread body must not be parsed as the next request
            self._error(e)

    # -- request checks --------------------------------------------------------------------
    def _check_host(self) -> None:
        """A page on another site that resolves its name to 127.0.0.1 (DNS rebinding) is refused."""
        host, allowed = self.headers.get("Host", ""), self.server.allowed_hosts()
        if allowed is not None and host not in allowed:
            raise ApiError(403, f"Host: {host!r} is not this server (open {self.server.url})", "Host")

    def _check_same_origin(self) -> None:
        """A cross-site form or fetch cannot send this: a foreign Origin, or a body that is not JSON."""
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != host:
            raise ApiError(403, f"Origin: {origin!r} may not change labels here", "Origin")
        if self.headers.get_content_type() != "application/json":
            raise ApiError(415, "Content-Type: send the action as application/json", "Content-Type")

    def _body(self) -> Any:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 < n <= MAX_BODY:
            raise ApiError(400, f"body: expected a JSON object of at most {MAX_BODY} bytes", "body")
        try:
            return json.loads(self.rfile.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"body: not JSON ({e})", "body") from None

    # -- responses -------------------------------------------------------------------------
    def _static(self, name: str) -> None:
        if name not in STATIC:
            raise ApiError(404, f"path: no static file {name!r}", "path")
        data = resources.files("shardwise.ui").joinpath("static", name).read_bytes()
        self._send(200, data, STATIC[name], cache="no-cache")

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", cache="no-store")

    def _error(self, e: Exception) -> None:
        if isinstance(e, ApiError):
            status, doc = e.status, e.to_json()
        elif isinstance(e, ShardwiseError):  # a store or data problem the user can act on
            status, doc = 500, {"error": str(e), "field": None}
        else:
            print(f"shardwise ui: {self.command} {self.path}: {type(e).__name__}: {e}", file=sys.stderr)
            status, doc = 500, {"error": f"internal error: {type(e).__name__}: {e}", "field": None}
        self._json(status, doc)

    def _send(self, status: int, data: bytes, ctype: str, cache: str) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def make_server(store: Store, namespace: str, user: str, experiment: str | None = None, host: str = "127.0.0.1",
                port: int = 8765, log=lambda m: None, fixes: Fixes | None = None) -> UiServer:
    """Bind (port 0 = any free port) without serving yet; call serve_forever() on the result.
    fixes: where fixes go (default: Dataset revisions written here as `user`; ClusterFixes in a cluster)."""
    annotator = Annotator(store, namespace, user, experiment, log, fixes)
    if experiment is not None and experiment not in annotator.experiment_names():
        raise ShardwiseError(f"--experiment: Experiment {namespace}/{experiment} has no report yet "
                             f"(with reports: {', '.join(annotator.experiment_names()) or 'none'}); "
                             "apply it and let it run")
    try:
        return UiServer(annotator, host, port)
    except OSError as e:
        raise ShardwiseError(f"--port: cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(server: UiServer, out=sys.stdout) -> None:
    """Print the URL, then serve until Ctrl-C."""
    a = server.annotator
    print(f"shardwise ui: {server.url} (namespace {a.namespace}, acting as {a.user}); Ctrl-C to stop",
          file=out, flush=True)
    host = str(server.server_address[0])
    if host not in LOOPBACK:
        print(f"warning: listening on {host}: anyone who can reach it changes labels as "
              f"{a.user}", file=sys.stderr)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print(f"[{time.strftime('%H:%M:%S')}] shardwise ui: stopped", file=sys.stderr)
    finally:
        server.server_close()
