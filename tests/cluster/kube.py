"""A small synchronous client of the Kubernetes API for the tests (urllib, a bearer token).

The tests speak to the real API server the way kubectl does; the operator under test uses its
own client (kubernetes_asyncio and kopf), so nothing here stands in for production code.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

G = "shardwise.io/v1alpha1"
PLURALS = {"Dataset": "datasets", "ShardedModel": "shardedmodels", "ForgetRequest": "forgetrequests",
           "Experiment": "experiments", "Correction": "corrections"}


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status, self.body = status, body

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class Kube:
    def __init__(self, url: str, token: str):
        self.url, self.token = url.rstrip("/"), token
        self._ctx = ssl._create_unverified_context()

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                accept: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type,
                                              "Accept": accept})
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=30) as r:
                text = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"message": raw.decode(errors="replace")}
            raise ApiError(e.code, doc) from None
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def merge(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def apply(self, path: str, doc: dict[str, Any], manager: str = "tests") -> Any:
        """Server-side apply, as `kubectl apply --server-side` (strict field validation)."""
        return self.request("PATCH", f"{path}?fieldManager={manager}&force=true&fieldValidation=Strict", doc,
                            "application/apply-patch+yaml")

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def cr(ns: str, kind_or_plural: str, name: str = "") -> str:
        plural = PLURALS.get(kind_or_plural, kind_or_plural)
        return f"/apis/{G}/namespaces/{ns}/{plural}" + (f"/{name}" if name else "")

    def apply_cr(self, ns: str, doc: dict[str, Any]) -> Any:
        doc = {**doc, "apiVersion": G, "metadata": {**doc["metadata"], "namespace": ns}}
        doc.pop("status", None)
        return self.apply(self.cr(ns, doc["kind"], doc["metadata"]["name"]), doc)

    def create_cr(self, ns: str, doc: dict[str, Any]) -> Any:
        """Create, as `kubectl create` (strict field validation: an unknown field is an error)."""
        doc = {**doc, "apiVersion": G, "metadata": {**doc["metadata"], "namespace": ns}}
        doc.pop("status", None)
        return self.request("POST", f"{self.cr(ns, doc['kind'])}?fieldValidation=Strict", doc)

    def namespace(self, name: str) -> None:
        try:
            self.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiError as e:
            if e.status != 409:
                raise

    def wait(self, what: str, fn: Callable[[], Any], timeout: float = 120, every: float = 0.3) -> Any:
        """fn() until it returns something truthy; its last error or value is in the failure."""
        end, last = time.monotonic() + timeout, None
        while time.monotonic() < end:
            try:
                out = fn()
                if out:
                    return out
                last = out
            except ApiError as e:
                last = e
            time.sleep(every)
        raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last})")
