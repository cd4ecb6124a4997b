"""B4, operator half: ForgetRequests handled per second by the real kopf handlers against kmock.

kmock stands in for the API server (as in the operator tests); the store is a folder.
The Dataset has no model, so the figure is the operator's own cost per request:
resolve, tombstone (one revision per pass, coalesced), status patches, the certificate.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any


async def measure(n: int) -> dict[str, Any]:
    import kmock
    from kopf.testing import KopfRunner

    from tests.helpers import dataset, forget
    from tests.integration.test_operator import LOGIN, NS, G, declare

    tmp = tempfile.TemporaryDirectory()
    async with kmock.KubernetesEmulator() as k, kmock.Server(k):
        declare(k)
        os.environ["SHARDWISE_KUBE_HOST"] = str(k.url).rstrip("/")
        os.environ["SHARDWISE_DEV_STORE"] = tmp.name
        runner = KopfRunner(["run", "--standalone", "--all-namespaces", "-m", "shardwise.kube.handlers", LOGIN])
        await asyncio.to_thread(runner.__enter__)
        try:
            while not list(k[k.action.WATCH, k.resource(f"{G}/forgetrequests")]):
                await asyncio.sleep(0.05)

            async def post(res) -> None:
                doc = res.to_doc()
                doc.pop("status", None)
                doc["metadata"] |= {"namespace": NS, "uid": f"uid-{res.name}", "generation": 1, "resourceVersion": "1"}
                await k.post(f"/apis/{G}/namespaces/{NS}/{res.PLURAL}", json=doc)

            async def phase(plural: str, name: str) -> str | None:
                r = await k.get(f"/apis/{G}/namespaces/{NS}/{plural}/{name}")
                return ((await r.json()).get("status") or {}).get("phase")

            await post(dataset())
            while await phase("datasets", "digits") != "Ready":
                await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            for i in range(n):
                await post(forget(f"f{i}", ids=[f"digits-{i:05d}"]))
            pending = {f"f{i}" for i in range(n)}
            while pending:
                done = {p for p in pending if await phase("forgetrequests", p) == "Complete"}
                pending -= done
                await asyncio.sleep(0.05)
            secs = time.perf_counter() - t0
        finally:
            await asyncio.to_thread(runner.__exit__, None, None, None)
            tmp.cleanup()
    return {"requests": n, "seconds": round(secs, 3), "requests_per_second": round(n / secs, 2)}


def run(quick: bool) -> list[dict[str, Any]]:
    return [asyncio.run(measure(n)) for n in ((5,) if quick else (1, 20, 100))]


if __name__ == "__main__":
    print(run(quick=False))
