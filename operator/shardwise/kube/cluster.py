"""The CLI in a cluster: resources from the API server of a kube context, as that context's user.

`shardwise --cluster ...` (or `--context NAME`) reads Datasets, ShardedModels, Experiments and
Corrections from the API server instead of the local registry, and files label fixes and drops as
Correction objects in the user's own name: RBAC decides who may, the chart's admission policy checks
the author, and the operator applies them. Data (reports, predictions, payloads) still comes from the
tenant's store (--store s3://...), read with the tenant's keys.

kubernetes_asyncio runs on a loop of its own in a background thread, so the synchronous CLI and the
page's request threads can call it alike.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from shardwise import API_GROUP, API_VERSION
from shardwise.api.common import Resource
from shardwise.errors import ClusterUnavailable, Forbidden, InvalidInput, NotFound

R = TypeVar("R", bound=Resource)
TIMEOUT = 30.0  # seconds for one API call


class Cluster:
    """One API server connection, with the credentials of one kube context."""

    def __init__(self, context: str | None = None):
        self.context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-api", daemon=True)
        self._thread.start()
        where = f"kube context {context!r}" if context else "the current kube context"
        try:
            # KUBECONFIG read now, not when kubernetes_asyncio was imported (it reads it once, at import)
            path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            self.api: client.ApiClient = self._run(config.new_client_from_config(config_file=path, context=context))
        except (config.ConfigException, OSError) as e:
            self.close()
            raise ClusterUnavailable(f"--cluster: cannot load {where} (KUBECONFIG or ~/.kube/config): {e}") from None
        self.where = where
        self._user: str | None = None

    def _run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if getattr(self, "api", None) is not None:
            self._run(self.api.close())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """One API call; its refusals as errors a user can act on."""
        async def go() -> Any:
            return await fn()
        try:
            return self._run(go())
        except ApiException as e:
            raise _refusal(what, e) from None
        except (OSError, TimeoutError) as e:
            raise ClusterUnavailable(f"{what}: the API server of {self.where} cannot be reached: {e}") from None
        except Exception as e:  # aiohttp's client errors carry no common base with OSError
            if type(e).__module__.startswith("aiohttp"):
                raise ClusterUnavailable(f"{what}: the API server of {self.where} cannot be reached: {e}") from None
            raise

    def whoami(self) -> str:
        """The user name the API server knows this context by (a SelfSubjectReview)."""
        if self._user is None:
            auth = client.AuthenticationV1Api(self.api)
            review = self.call("who am I", lambda: auth.create_self_subject_review(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
            self._user = review.status.user_info.username
        return self._user


class ClusterRegistry:
    """The API server's resources of one namespace, with the local Registry's reading methods."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.custom = client.CustomObjectsApi(cluster.api)

    def get(self, cls: type[R], name: str) -> R | None:
        try:
            doc = self.cluster.call(f"{cls.KIND} {self.namespace}/{name}",
                                    lambda: self.custom.get_namespaced_custom_object(
                                        API_GROUP, API_VERSION, self.namespace, cls.PLURAL, name))
        except NotFound:
            return None
        return cls.model_validate(doc)

    def require(self, cls: type[R], name: str) -> R:
        r = self.get(cls, name)
        if r is None:
            raise NotFound(f"{cls.KIND} {self.namespace}/{name} not found in {self.cluster.where}")
        return r

    def list(self, cls: type[R]) -> list[R]:
        doc = self.cluster.call(f"list {cls.PLURAL} in {self.namespace}",
                                lambda: self.custom.list_namespaced_custom_object(
                                    API_GROUP, API_VERSION, self.namespace, cls.PLURAL))
        return [cls.model_validate(d) for d in doc.get("items", [])]

    def create(self, res: R, generate_name: str | None = None) -> R:
        """Create as this context's user; the object as the API server stored it."""
        body = res.to_doc()
        body["metadata"] = {"namespace": self.namespace, **({"generateName": generate_name} if generate_name
                                                            else {"name": res.name})}
        body.pop("status", None)
        doc = self.cluster.call(f"create {res.kind}", lambda: self.custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, res.PLURAL, body))
        return type(res).model_validate(doc)

    def wait(self, cls: type[R], name: str, done: Callable[[R], bool], timeout: float,
             every: float = 1.0) -> R | None:
        """Poll until done(resource); the last one seen (None if it went away) when time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(cls, name)
            if r is None or done(r) or time.monotonic() > deadline:
                return r
            time.sleep(every)


def _refusal(what: str, e: ApiException) -> Exception:
    import json

    try:
        msg = json.loads(e.body or "{}").get("message") or e.reason
    except ValueError:
        msg = e.reason
    if e.status == 404:
        return NotFound(f"{what}: not found ({msg}; are the shardwise.io CRDs installed?)")
    if e.status in (401, 403):
        return Forbidden(f"{what}: refused by the API server: {msg}")
    if e.status in (400, 409, 422):
        return InvalidInput(f"{what}: refused by the API server: {msg}")
    return ClusterUnavailable(f"{what}: the API server answered {e.status}: {msg}")
