"""The Helm chart, rendered and linted by Helm itself (helm-python-sdk bundles Helm as a
library: no helm binary), and every rendered built-in object validated against the
Kubernetes 1.30 schemas (kubernetes-validate, strict)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from shardwise.cli import build_parser

helm = pytest.importorskip(
    "helm_python.chart", reason="helm-python-sdk (Helm as a library) is not installed: pip install -e '.[test]'")
import kubernetes_validate as kv  # noqa: E402  (in the test extra beside helm-python-sdk: never skipped alone)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shardwise"
KUBE = "1.30.0"
RELEASE, NAMESPACE = "rel", "shardwise-system"
ENDPOINT = {"store": {"endpoint": "http://s3.storage:9000"}}

# The operator's rules, exactly: a ClusterRole when cluster-wide, else a Role per namespace.
RULES = [
    {"apiGroups": ["shardwise.io"],
     "resources": ["datasets", "shardedmodels", "forgetrequests", "experiments", "corrections"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["shardwise.io"],
     "resources": ["datasets/status", "shardedmodels/status", "forgetrequests/status", "experiments/status",
                   "corrections/status"],
     "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["shardwise.io"], "resources": ["shardedmodels"], "verbs": ["create"]},
    {"apiGroups": ["shardwise.io"], "resources": ["shardedmodels/finalizers", "experiments/finalizers"],
     "verbs": ["update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["shardwise-s3"], "verbs": ["get"]},
]
# Leader election, in the release namespace, in both modes.
LEADER_RULES = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
# Cluster-scoped, read-only, in both modes (a Role cannot grant cluster-scoped resources).
DISCOVERY_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
]


def render_files(values: dict) -> dict[str, str]:
    return helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict) -> list[dict]:
    docs = []
    for path, text in render_files(values).items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def operator_deployment(docs: list[dict]) -> dict:
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-operator"]
    return dep


def env_of(docs: list[dict]) -> dict[str, str]:
    (c,) = operator_deployment(docs)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in c["env"]}


def images(docs: list[dict]) -> list[str]:
    return [c["image"] for d in docs if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]]


def validate_all(docs: list[dict]) -> None:
    assert docs
    for d in docs:
        kv.validate(d, KUBE, strict=True)  # raises on any schema error or unknown field


def test_defaults_render_valid_minimal_objects():
    docs = render(ENDPOINT)  # the only required value: where the store is (or s3.bundled)
    validate_all(docs)
    assert {d["kind"] for d in docs} == {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Service",
                                         "Role", "RoleBinding"}

    dep = operator_deployment(docs)
    assert dep["metadata"]["namespace"] == NAMESPACE
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{RELEASE}-operator"
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pod["containers"]
    assert c["image"] == "shardwise/operator:0.1.0"
    assert all(":" in i and not i.endswith(":latest") for i in images(docs))
    assert "command" not in c  # the image's entrypoint is `shardwise`
    assert c["args"] == ["operator", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=full",
                         "--metrics-port=8081"]
    (json_logs,) = operator_deployment(render({**ENDPOINT, "operator": {"logFormat": "json", "verbose": True}}))[
        "spec"]["template"]["spec"]["containers"]
    assert json_logs["args"][-3:] == ["--log-format=json", "--verbose", "--metrics-port=8081"]
    assert build_parser().parse_args(json_logs["args"]).log_format == "json"  # the CLI takes what the chart passes
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["ports"] == [{"name": "health", "containerPort": 8080}, {"name": "metrics", "containerPort": 8081}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}

    env = env_of(docs)
    assert env == {
        "SHARDWISE_S3_ENDPOINT": "http://s3.storage:9000",
        "SHARDWISE_STORE_BUCKET": "shardwise",
        "SHARDWISE_STORE_PREFIX": "",
        "SHARDWISE_S3_SECRET": "shardwise-s3",
        "SHARDWISE_TRAINER_IMAGE": "shardwise/trainer:0.1.0-cuda",
        "SHARDWISE_WATCH_NAMESPACES": "",
        "SHARDWISE_TRAINER_BACKOFF_LIMIT": "3",
        "SHARDWISE_TRAINER_DEADLINE_SECONDS": "21600",
        "SHARDWISE_GPU_TOLERATIONS": env["SHARDWISE_GPU_TOLERATIONS"],
        "SHARDWISE_RESYNC_SECONDS": "30",
        "SHARDWISE_LEASE_NAMESPACE": NAMESPACE, "SHARDWISE_LEASE_NAME": f"{RELEASE}-operator",
        "SHARDWISE_IMAGE_PULL_SECRETS": "",
        "HOME": "/tmp",
    }
    assert json.loads(env["SHARDWISE_GPU_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert set(roles) == {f"{RELEASE}-operator", f"{RELEASE}-operator-discovery", f"{RELEASE}-viewer",
                          f"{RELEASE}-annotator"}  # the last two are for people (see the test below)
    assert roles[f"{RELEASE}-operator"]["rules"] == RULES  # exactly the minimal set, nothing more
    assert roles[f"{RELEASE}-operator-discovery"]["rules"] == DISCOVERY_RULES
    for b in by_kind(docs, "ClusterRoleBinding"):
        assert b["roleRef"]["name"] in roles
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-operator", "namespace": NAMESPACE}]
    # namespaced: only the leader election's, in the release namespace
    (leader,) = by_kind(docs, "Role")
    assert leader["metadata"]["namespace"] == NAMESPACE and leader["rules"] == LEADER_RULES
    (lb,) = by_kind(docs, "RoleBinding")
    assert lb["roleRef"]["name"] == leader["metadata"]["name"] and lb["subjects"][0]["name"] == f"{RELEASE}-operator"
    assert env_of(docs)["SHARDWISE_LEASE_NAMESPACE"] == NAMESPACE
    assert env_of(docs)["SHARDWISE_LEASE_NAME"] == f"{RELEASE}-operator"
    assert not [d for d in docs if d["metadata"]["name"].startswith(f"{RELEASE}-s3")]  # no bundled S3


def test_namespaced_mode_uses_roles_per_namespace():
    docs = render({**ENDPOINT, "watch": {"clusterWide": False, "namespaces": ["team-a", "team-b"]}})
    validate_all(docs)
    roles = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == RULES for r in roles)
    bindings = [b for b in by_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-leader")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-operator", "namespace": NAMESPACE}]
               and b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                    "name": f"{RELEASE}-operator"} for b in bindings)
    # Only the read-only discovery ClusterRole stays: namespaces and CRDs are cluster-scoped.
    (cr,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].startswith(f"{RELEASE}-operator")]
    assert cr["metadata"]["name"] == f"{RELEASE}-operator-discovery" and cr["rules"] == DISCOVERY_RULES
    assert [b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")] == [f"{RELEASE}-operator-discovery"]
    assert env_of(docs)["SHARDWISE_WATCH_NAMESPACES"] == "team-a,team-b"


def test_the_bundled_trial_s3_server():
    docs = render({"s3": {"bundled": True}})
    validate_all(docs)
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert {("Deployment", "rel-s3"), ("Service", "rel-s3"), ("Secret", "rel-s3")} <= set(objs)
    assert ("PersistentVolumeClaim", "rel-s3") not in objs  # an emptyDir unless persistence.enabled
    assert env_of(docs)["SHARDWISE_S3_ENDPOINT"] == f"http://rel-s3.{NAMESPACE}.svc:8333"

    svc, dep, secret = objs["Service", "rel-s3"], objs["Deployment", "rel-s3"], objs["Secret", "rel-s3"]
    assert svc["spec"]["ports"][0]["port"] == 8333
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "chrislusf/seaweedfs:3.80"
    assert c["args"][:3] == ["server", "-s3", "-s3.port=8333"] and "-dir=/data" in c["args"]
    # the server enforces the Secret's keys: one identity in its -s3.config file
    assert "-s3.config=/etc/seaweedfs-s3/s3.json" in c["args"]
    keys = secret["stringData"]
    cfg = json.loads(keys["s3.json"])
    assert cfg["identities"][0]["credentials"] == [
        {"accessKey": keys["AWS_ACCESS_KEY_ID"], "secretKey": keys["AWS_SECRET_ACCESS_KEY"]}]
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "emptyDir": {}}

    docs = render({"s3": {"bundled": True, "persistence": {"enabled": True, "size": "5Gi"}}})
    validate_all(docs)
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    (dep,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-s3"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "rel-s3"}} in dep["spec"]["template"]["spec"][
        "volumes"]
    # an explicit endpoint wins over the bundled server's
    assert env_of(render({**ENDPOINT, "s3": {"bundled": True}}))["SHARDWISE_S3_ENDPOINT"] == "http://s3.storage:9000"


@pytest.mark.parametrize("values", [ENDPOINT, {"s3": {"bundled": True, "persistence": {"enabled": True}}},
                                    {**ENDPOINT, "watch": {"clusterWide": False, "namespaces": ["a", "b"]}}],
                         ids=["endpoint", "bundled", "namespaced"])
def test_lint_strict_is_clean(values):
    rep = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    assert not rep["errors"], rep


@pytest.mark.parametrize("values, where", [
    ({"watch": {"clusterWide": "yes"}}, "/watch/clusterWide"),
    ({"watch": {"clusterWide": True, "namspaces": ["a"]}}, "/watch"),  # a typo is refused too
    ({"image": {"operator": {"repository": "x", "tag": "latest"}}}, "/image/operator/tag"),
    ({"s3": {"image": "chrislusf/seaweedfs:latest"}}, "/s3/image"),
    ({"store": {"endpoint": "s3.storage:9000"}}, "/store/endpoint"),
    ({"trainer": {"backoffLimit": "3"}}, "/trainer/backoffLimit"),
])
def test_bad_values_are_refused_by_the_schema(values, where):
    values = {**values, "s3": {"bundled": True, **values.get("s3", {})}}
    with pytest.raises(Exception, match=re.escape(f"at '{where}'")) as e:
        render(values)
    assert "specifications of the schema" in str(e.value)  # values.schema.json, not a template
    rep = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    assert any(f"at '{where}'" in err for err in rep["errors"]), rep


def test_required_choices_fail_with_a_clear_message():
    with pytest.raises(Exception, match="store.endpoint"):
        render({})  # neither an endpoint nor the trial server
    with pytest.raises(Exception, match="watch.namespaces"):
        render({**ENDPOINT, "watch": {"clusterWide": False}})


def test_notes_say_how_to_upgrade_crds():
    notes = next(t for p, t in render_files(ENDPOINT).items() if p.endswith("NOTES.txt"))
    assert "kubectl apply --server-side -f charts/shardwise/crds/" in notes
    assert "AWS_ACCESS_KEY_ID" in notes and "shardwise-s3" in notes


def test_chart_crds_are_the_generated_ones():
    fix = "run `shardwise crds && cp crds/*.yaml charts/shardwise/crds/`"
    generated = {p.name for p in (ROOT / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty: run `shardwise crds`"
    assert {p.name for p in (CHART / "crds").glob("*.yaml")} == generated, f"chart crds/ differ in files: {fix}"
    for name in sorted(generated):
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/shardwise/crds/{name} is stale: {fix}")
    # and Helm itself loads them as the chart's CRDs (installed on first install only)
    assert {Path(c["filename"]).name for c in helm.Chart.load(str(CHART)).crds} == generated


def test_people_get_a_viewer_and_an_annotator_role_and_corrections_name_their_author():
    roles = {r["metadata"]["name"]: r for r in by_kind(render(ENDPOINT), "ClusterRole")}
    viewer, annotator = roles[f"{RELEASE}-viewer"], roles[f"{RELEASE}-annotator"]
    kinds = ["datasets", "shardedmodels", "forgetrequests", "experiments", "corrections"]
    assert viewer["rules"] == [{"apiGroups": ["shardwise.io"], "resources": kinds, "verbs": ["get", "list", "watch"]}]
    assert annotator["rules"] == viewer["rules"] + [
        {"apiGroups": ["shardwise.io"], "resources": ["corrections"], "verbs": ["create"]}]
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert annotator["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    plain = {r["metadata"]["name"]: r for r in by_kind(render({**ENDPOINT, "userRoles": {"aggregate": False}}),
                                                       "ClusterRole")}
    assert not any(k.startswith("rbac.authorization") for k in plain[f"{RELEASE}-annotator"]["metadata"]["labels"])
    (policy,) = by_kind(render(ENDPOINT), "ValidatingAdmissionPolicy")
    (binding,) = by_kind(render(ENDPOINT), "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["corrections"]
    assert [v["expression"] for v in policy["spec"]["validations"]] == [
        "object.spec.author == request.userInfo.username"]  # what the control-plane suite proves it does


def test_metrics_get_a_service_and_optionally_a_service_monitor():
    docs = render(ENDPOINT)
    (svc,) = by_kind(docs, "Service")
    dep = operator_deployment(docs)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8081} in c["ports"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics"}]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert by_kind(docs, "ServiceMonitor") == []  # off by default: it needs the Prometheus Operator's CRDs
    on = render({**ENDPOINT, "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    (mon,) = by_kind(on, "ServiceMonitor")
    assert mon["metadata"]["labels"]["release"] == "prom"
    assert mon["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    off = render({**ENDPOINT, "metrics": {"enabled": False}})
    assert by_kind(off, "Service") == [] and "--metrics-port=8081" not in str(operator_deployment(off))


def test_umbrella_values_pull_secrets_and_digests():
    digest = "sha256:" + "ab" * 32
    docs = render({**ENDPOINT, "global": {"imageRegistry": "reg.example", "storageClass": "fast"},
                   "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
                   "image": {"operator": {"repository": "reg.example/sw/operator", "tag": "0.1.0", "digest": digest},
                             "trainer": {"repository": "reg.example/sw/trainer", "tag": "0.1.0-cpu",
                                         "digest": digest}}})
    validate_all(docs)
    pod = operator_deployment(docs)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["containers"][0]["image"] == f"reg.example/sw/operator@{digest}"
    env = env_of(docs)
    assert env["SHARDWISE_TRAINER_IMAGE"] == f"reg.example/sw/trainer@{digest}"
    assert env["SHARDWISE_IMAGE_PULL_SECRETS"] == "regcred,mirror"  # the trainer Jobs get them too
    for bad in ({"image": {"operator": {"repository": "r", "tag": "t", "digest": "sha256:short"}}},
                {"imagePullSecrets": ["regcred"]}):
        with pytest.raises(Exception, match="values|schema|digest|imagePullSecrets"):
            render({**ENDPOINT, **bad})


def test_the_operator_image_carries_neither_torch_nor_plotting_libraries():
    """The operator image is `pip install .` (operator/Dockerfile): the core dependencies, without extras."""
    import subprocess
    import sys
    import tomllib

    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in core if d.lower().startswith(("torch", "matplotlib"))], core
    code = ("import sys, shardwise.cli, shardwise.kube.handlers, shardwise.kube.body; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib', 'shardwise_trainer'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the operator's code imports none of them
