"""The Helm chart, rendered and linted by Helm itself (helm-python-sdk bundles Helm as a
library), and every rendered built-in object validated against the Kubernetes 1.30 schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python.chart", reason="helm-python-sdk is in the test extra")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shardwise"
RULES = [
    {"apiGroups": ["shardwise.io"], "resources": ["datasets", "shardedmodels", "forgetrequests", "experiments"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["shardwise.io"], "resources": ["datasets/status", "shardedmodels/status", "forgetrequests/status",
                                                  "experiments/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["shardwise-s3"], "verbs": ["get"]},
]


def render(values: dict | None = None) -> list[dict]:
    out = helm.Chart.load(str(CHART)).render(values or {}, name="rel", namespace="shardwise-system", is_install=True)
    docs = []
    for path, text in out.items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def env_of(docs: list[dict]) -> dict[str, str]:
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-operator"]
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_defaults_render_valid_minimal_objects():
    docs = render({"store": {"endpoint": "http://s3.storage:9000"}})
    for d in docs:
        kv.validate(d, "1.30.0", strict=True)
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "shardwise/operator:0.1.0" and not c["image"].endswith(":latest")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(docs)
    assert env["SHARDWISE_TRAINER_IMAGE"] == "shardwise/trainer:0.1.0-cuda"
    assert env["SHARDWISE_S3_ENDPOINT"] == "http://s3.storage:9000" and env["SHARDWISE_WATCH_NAMESPACES"] == ""
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert roles["rel-operator"]["rules"] == RULES  # exactly the minimal set, nothing more
    assert {r["resources"][0] for r in roles["rel-operator-discovery"]["rules"]} == {"namespaces",
                                                                                    "customresourcedefinitions"}
    assert all(v == ["get", "list", "watch"] for v in (r["verbs"] for r in roles["rel-operator-discovery"]["rules"]))
    assert not [d for d in docs if d["metadata"]["name"].startswith("rel-s3")]


def test_namespaced_mode_uses_roles_per_namespace():
    docs = render({"store": {"endpoint": "http://s3:9000"}, "watch": {"clusterWide": False, "namespaces": ["a", "b"]}})
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    assert all(r["rules"] == RULES for r in roles)
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["a", "b"]
    # only the read-only discovery ClusterRole stays cluster-wide
    assert [r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")] == ["rel-operator-discovery"]
    assert env_of(docs)["SHARDWISE_WATCH_NAMESPACES"] == "a,b"


def test_the_bundled_trial_s3_server():
    docs = render({"s3": {"bundled": True}})
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "rel-s3"), ("Service", "rel-s3"), ("Secret", "rel-s3")} <= names
    assert env_of(docs)["SHARDWISE_S3_ENDPOINT"] == "http://rel-s3.shardwise-system.svc:8333"
    for d in docs:
        kv.validate(d, "1.30.0", strict=True)


def test_lint_is_clean_and_bad_values_are_refused():
    rep = helm.lint(str(CHART), {"s3": {"bundled": True}}, strict=True, kube_version="v1.30.0")
    assert not rep["errors"], rep
    with pytest.raises(Exception, match="clusterWide"):
        render({"watch": {"clusterWide": "yes"}, "s3": {"bundled": True}})
    with pytest.raises(Exception, match="store.endpoint"):
        render({})  # neither an endpoint nor the trial server
    with pytest.raises(Exception):
        render({"image": {"operator": {"repository": "x", "tag": "latest"}}, "s3": {"bundled": True}})


def test_chart_crds_are_the_generated_ones():
    for f in sorted((ROOT / "crds").glob("*.yaml")):
        assert (CHART / "crds" / f.name).read_text() == f.read_text(), (
            f"charts/shardwise/crds/{f.name} is stale: run `shardwise crds && cp crds/*.yaml charts/shardwise/crds/`")
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == {p.name for p in (ROOT / "crds").glob("*.yaml")}
