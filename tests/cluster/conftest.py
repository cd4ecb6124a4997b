"""One real control plane for the tests/cluster package (see controlplane.py); each test its own namespace."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.controlplane import REPO, ControlPlane, find_assets
from tests.cluster.kube import Kube

CHART_CRDS = REPO / "charts" / "shardwise" / "crds"


@pytest.fixture(scope="package")  # stopped when tests/cluster is done: the rest of a run needs no cluster
def control_plane(tmp_path_factory) -> Iterator[ControlPlane]:
    work = tmp_path_factory.mktemp("control-plane")
    assets = find_assets(work)
    if isinstance(assets, str):
        if os.environ.get("SHARDWISE_REQUIRE_CLUSTER"):  # set by .ci/run: there the suite must run
            pytest.fail(f"SHARDWISE_REQUIRE_CLUSTER is set but {assets}")
        pytest.skip(assets)
    cp = ControlPlane(work, assets).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="package")
def kube(control_plane) -> Kube:
    """The admin's client, with the CRDs installed as the chart ships them."""
    k = Kube(control_plane.url, control_plane.token)
    for f in sorted(CHART_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        k.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}", crd)
    for f in sorted(CHART_CRDS.glob("*.yaml")):
        name = yaml.safe_load(f.read_text())["metadata"]["name"]
        k.wait(f"CRD {name} established", lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (k.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").get("status") or {})
            .get("conditions", [])))
    return k


@pytest.fixture
def ns(kube) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.namespace(name)
    return name


def crd_files() -> list[Path]:
    return sorted(CHART_CRDS.glob("*.yaml"))
