"""The CRDs on a real API server: installed as the chart ships them, and every bad spec refused by
the API server itself (schema, strict field decoding, CEL immutability and cross-field rules),
the same specs the local body's registry refuses, with the same words."""

from __future__ import annotations

import copy

import pytest

from shardwise.errors import InvalidInput
from shardwise.local.manifests import parse_doc
from tests.cluster.conftest import crd_files
from tests.cluster.kube import ApiError, G

pytestmark = pytest.mark.cluster

DATASET = {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"source": {"builtin": "digits"}, "testFraction": 0.2}}
MODEL = {"kind": "ShardedModel", "metadata": {"name": "m"}, "spec": {"datasetRef": "d", "shards": 2, "slices": 2}}
FORGET = {"kind": "ForgetRequest", "metadata": {"name": "f"}, "spec": {"datasetRef": "d", "ownerKey": "p"}}
EXPERIMENT = {"kind": "Experiment", "metadata": {"name": "x"}, "spec": {"datasetRef": "d", "modelRef": "m"}}
CORRECTION = {"kind": "Correction", "metadata": {"name": "c"},
              "spec": {"datasetRef": "d", "author": "admin", "relabel": [{"id": "s1", "label": "3"}]}}


def with_spec(doc: dict, **spec) -> dict:
    out = copy.deepcopy(doc)
    out["spec"] = {**out["spec"], **spec}
    return out


def test_the_charts_crds_are_established_and_serve_every_kind(kube):
    names = {f.name.split("_", 1)[1][:-5] for f in crd_files()}
    assert names == {"datasets", "shardedmodels", "forgetrequests", "experiments", "corrections"}
    found = {r["name"] for r in kube.get(f"/apis/{G}")["resources"]}
    assert {"datasets", "datasets/status", "shardedmodels/status", "forgetrequests", "experiments"} <= found


@pytest.mark.parametrize("doc, words", [
    (with_spec(MODEL, shards=0), "spec.shards"),
    (with_spec(MODEL, datasetRef="Bad_Name"), "spec.datasetRef"),
    (with_spec(MODEL, aggregation="max"), "spec.aggregation"),
    (with_spec(MODEL, shardz=3), 'unknown field "spec.shardz"'),
    (with_spec(DATASET, source={"builtin": "digits", "uri": "s3://b/k.csv"}), "exactly one of source.builtin or"),
    (with_spec(DATASET, source={}), "exactly one of source.builtin or source.uri"),
    (with_spec(DATASET, classes=["a", "a"]), "spec.classes"),
    (with_spec(FORGET, sampleIds=["a"]), "exactly one of spec.sampleIds or spec.ownerKey"),
    ({**FORGET, "spec": {"datasetRef": "d"}}, "exactly one of spec.sampleIds or spec.ownerKey"),
    (with_spec(EXPERIMENT, train={"shards": 2}), "spec.modelRef, spec.train: give exactly one"),
    ({**EXPERIMENT, "spec": {"datasetRef": "d"}}, "spec.modelRef, spec.train: give exactly one"),
    (with_spec(CORRECTION, drop=["s2"]), "set exactly one of spec.relabel or spec.drop"),
    (with_spec(CORRECTION, relabel=[]), "set exactly one of spec.relabel or spec.drop"),
    (with_spec(CORRECTION, relabel=[{"id": "s1", "label": "3"}, {"id": "s1", "label": "4"}]), "spec.relabel"),
    ({**CORRECTION, "spec": {"datasetRef": "d", "author": "admin", "drop": ["s2", "s2"]}}, "spec.drop"),
])
def test_a_bad_spec_is_refused_by_the_api_server_and_the_local_registry_alike(kube, ns, doc, words):
    with pytest.raises(ApiError) as e:
        kube.create_cr(ns, doc)
    # 422 Invalid for a value the schema or a CEL rule refuses, 400 for strict decoding (an unknown field)
    assert e.value.status in (400, 422) and words in e.value.message, e.value.message
    local = {**doc, "apiVersion": G}
    with pytest.raises(InvalidInput) as mine:  # the local body refuses the same document
        parse_doc(local, "doc")
    field = words.split('"')[1].removeprefix("spec.") if words.startswith("unknown") else None
    assert (field in str(mine.value)) if field else any(w in str(mine.value) for w in words.split(" or ")), mine.value


@pytest.mark.parametrize("doc, change, words", [
    (DATASET, {"testFraction": 0.3}, "spec.testFraction is immutable"),
    (DATASET, {"source": {"builtin": "digits", "ownersPerSample": 5}}, "spec.source is immutable"),
    (MODEL, {"shards": 4}, "spec.shards is immutable"),
    (MODEL, {"training": {"epochsPerSlice": 3}}, "spec.training is immutable"),
    (FORGET, {"ownerKey": "q"}, "spec.ownerKey is immutable"),
    (EXPERIMENT, {"modelRef": None, "train": {"shards": 2}}, "spec.train is immutable"),
    (CORRECTION, {"relabel": [{"id": "s1", "label": "4"}]}, "spec.relabel is immutable"),
])
def test_an_immutable_field_cannot_change_in_the_cluster(kube, ns, doc, change, words):
    kube.apply_cr(ns, doc)
    changed = with_spec(doc, **change)
    changed["spec"] = {k: v for k, v in changed["spec"].items() if v is not None}
    with pytest.raises(ApiError) as e:
        kube.apply_cr(ns, changed)
    assert e.value.status == 422 and words in e.value.message, e.value.message
    # a mutable field still changes
    if doc is MODEL:
        kube.apply_cr(ns, with_spec(doc, maxParallelShards=1, aggregation="vote"))
        assert kube.get(kube.cr(ns, "ShardedModel", "m"))["spec"]["aggregation"] == "vote"


def test_an_explicit_null_reads_as_absent_in_both(kube, ns):
    """A null optional field is dropped by the API server (pruned) and read as None by pydantic."""
    doc = with_spec(DATASET, source={"builtin": "digits", "uri": None})
    kube.apply_cr(ns, doc)
    stored = kube.get(kube.cr(ns, "Dataset", "d"))
    assert parse_doc({**stored, "apiVersion": G}, "doc").spec.source.builtin == "digits"


@pytest.mark.parametrize("conditions, words", [
    ([{"type": "Ready", "status": "True", "reason": "Ingested", "lastTransitionTime": "2026-12-03T12:00:00Z"},
      {"type": "Ready", "status": "False", "reason": "Failed", "lastTransitionTime": "2026-12-03T12:00:00Z"}],
     "Duplicate value"),
    ([{"type": "Ready", "status": "True", "reason": "not camel", "lastTransitionTime": "2026-12-03T12:00:00Z"}],
     "reason"),
    ([{"type": "Ready", "status": "True", "reason": "Ingested", "lastTransitionTime": "yesterday"}],
     "lastTransitionTime"),
])
def test_status_conditions_are_checked_as_metav1_conditions(kube, ns, conditions, words):
    kube.apply_cr(ns, DATASET)
    with pytest.raises(ApiError) as e:
        kube.merge(kube.cr(ns, "Dataset", "d") + "/status", {"status": {"conditions": conditions}})
    assert e.value.status == 422 and words in e.value.message, e.value.message


def test_kubectl_get_shows_the_ready_condition(kube, ns):
    """The Table the API server serves `kubectl get` (printer columns evaluated by the server)."""
    kube.apply_cr(ns, DATASET)
    kube.merge(kube.cr(ns, "Dataset", "d") + "/status", {"status": {"phase": "Ready", "conditions": [
        {"type": "Progressing", "status": "False", "reason": "Idle", "lastTransitionTime": "2026-12-03T12:00:00Z"},
        {"type": "Ready", "status": "True", "reason": "Ingested", "lastTransitionTime": "2026-12-03T12:00:00Z"}]}})
    table = kube.request("GET", kube.cr(ns, "Dataset"), accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    names = [c["name"] for c in table["columnDefinitions"]]
    (row,) = table["rows"]
    assert names[:3] == ["Name", "Phase", "Ready"] and row["cells"][1:3] == ["Ready", "True"], (names, row["cells"])
