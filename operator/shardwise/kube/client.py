"""A thin async client for what the kube body needs from the API server."""

from __future__ import annotations

import base64
import builtins
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from shardwise import API_GROUP, API_VERSION

MERGE = "application/merge-patch+json"


async def make_api_client(host: str | None) -> client.ApiClient:
    if host:
        cfg = client.Configuration(host=host)
        cfg.verify_ssl = False
        return client.ApiClient(cfg)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient):
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)

    async def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, ns, plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def list(self, plural: str, ns: str) -> list[dict[str, Any]]:
        res = await self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, ns, plural)
        return list(res.get("items", []))

    async def patch_status(self, plural: str, ns: str, name: str, status: dict[str, Any]) -> None:
        # merge-patch: the status is written as a whole object each time
        await self.custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, ns, plural, name, {"status": status}, _content_type=MERGE)

    async def patch_labels(self, plural: str, ns: str, name: str, labels: dict[str, str | None]) -> None:
        """Set labels (None removes one) by merge-patch; an object deleted meanwhile is left alone."""
        try:
            await self.custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, plural, name, {"metadata": {"labels": labels}}, _content_type=MERGE)
        except ApiException as e:
            if e.status != 404:
                raise

    async def create(self, plural: str, ns: str, body: dict[str, Any]) -> bool:
        """Create a custom object; False when one of that name exists already."""
        try:
            await self.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, ns, plural, body)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    async def create_job(self, ns: str, body: dict[str, Any]) -> bool:
        """False when it already exists: Job names are deterministic, so that means done already."""
        try:
            await self.batch.create_namespaced_job(ns, body)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    async def jobs_of(self, ns: str, model: str) -> dict[str, dict[str, Any]]:
        res = await self.batch.list_namespaced_job(ns, label_selector=f"shardwise.io/model={model}")
        out = {}
        for j in res.items:  # filtered again here: some API emulators ignore label selectors
            if (j.metadata.labels or {}).get("shardwise.io/model") == model:
                out[j.metadata.name] = self.api.sanitize_for_serialization(j)
        return out

    async def managed_jobs(self, ns: str) -> builtins.list[dict[str, Any]]:
        """Every Job the operator made in a namespace (training, evaluation, experiment)."""
        res = await self.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/managed-by=shardwise")
        return [self.api.sanitize_for_serialization(j) for j in res.items
                if (j.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "shardwise"]

    async def secret(self, ns: str, name: str) -> dict[str, str]:
        s = await self.core.read_namespaced_secret(name, ns)
        return {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
