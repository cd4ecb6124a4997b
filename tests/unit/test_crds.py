"""The CRDs are generated from the pydantic models, structural, and never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shardwise.api import KINDS, Dataset, ShardedModel
from shardwise.api.correction import CorrectionSpec
from shardwise.api.crds import crd_for, main_crds, render_crds, write_crds
from shardwise.api.dataset import DatasetSpec
from shardwise.api.experiment import ExperimentSpec
from shardwise.api.forget import ForgetRequestSpec
from shardwise.api.model import ShardedModelSpec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_on_disk_match_the_models():
    want = render_crds()
    have = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert set(have) == set(want), "crds/ has missing or extra files: run `shardwise crds` to regenerate"
    for name, text in want.items():
        assert have[name] == text, f"crds/{name} drifted from the API models: run `shardwise crds` to regenerate"


def walk(node: dict[str, Any], path: str = "$"):
    yield path, node
    for k, v in node.get("properties", {}).items():
        yield from walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_schemas_are_structural(kind):
    schema = crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs", "const"):
            assert banned not in node, f"{path} holds {banned}"
        assert not ("properties" in node and "additionalProperties" in node), path
        # OpenAPI v3.0 (JSONSchemaProps) has boolean exclusive bounds, not JSON Schema 2020-12 numbers.
        for excl, incl in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if excl in node:
                assert node[excl] is True and incl in node, f"{path}.{excl} must be a boolean next to {incl}"
        # nullable + enum would make the API server refuse an explicit null, which pydantic accepts.
        assert not ("enum" in node and node.get("nullable")), f"{path}: nullable enum"


def test_defaults_are_valid_against_their_own_schema():
    for cls in KINDS.values():
        schema = crd_for(cls)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            if "default" in node:
                errors = list(jsonschema.Draft7Validator(to_jsonschema(node)).iter_errors(node["default"]))
                assert not errors, f"{cls.KIND} {path}: default {node['default']!r} is invalid: {errors[0].message}"


def test_crds_are_valid_customresourcedefinitions():
    """The CRD objects themselves against the Kubernetes 1.30 apiextensions schema (what kubectl apply checks)."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    for cls in KINDS.values():
        kv.validate(crd_for(cls), "1.30.0", strict=True)


def test_field_descriptions_reach_the_crd():
    spec = crd_for(ShardedModel)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for name, field in ShardedModelSpec.model_fields.items():
        if field.description:
            assert spec["properties"][name]["description"] == field.description
    assert {r["message"] for r in spec["x-kubernetes-validations"]} >= {"spec.shards is immutable",
                                                                      "spec.slices is immutable"}


def test_printer_columns():
    cols = crd_for(ShardedModel)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in cols] == [
        ("Phase", ".status.phase"), ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        ("Version", ".status.publishedVersion"), ("Shards", ".status.shardsReadyText"),
        ("Accuracy", ".status.accuracy"), ("Age", ".metadata.creationTimestamp")]
    for cls in KINDS.values():  # every kind shows its Ready condition after its phase
        names = [c["name"] for c in crd_for(cls)["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert names[:2] == ["Phase", "Ready"], (cls.KIND, names)


def to_jsonschema(node: Any) -> Any:
    """The OpenAPI v3.0 dialect in Draft 7 terms, so jsonschema can judge like the API server:
    `nullable` adds the null type, boolean exclusive bounds become numeric ones, and the
    x-kubernetes-* extensions (pruning, CEL) are left to the API server."""
    if isinstance(node, dict):
        out = {k: to_jsonschema(v) for k, v in node.items()
               if not k.startswith("x-kubernetes") and k not in ("properties", "enum", "default")}
        for k in ("enum", "default"):  # values, not schemas
            if k in node:
                out[k] = node[k]
        if "properties" in node:
            out["properties"] = {name: to_jsonschema(sub) for name, sub in node["properties"].items()}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        for excl, incl in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if out.get(excl) is True:
                out[excl] = out.pop(incl)
            elif out.get(excl) is False:
                out.pop(excl)
        return out
    if isinstance(node, list):
        return [to_jsonschema(x) for x in node]
    return node


def prune_nulls(doc: Any, node: dict) -> Any:
    """The API server drops an explicit null for a field that is not nullable before it validates."""
    if isinstance(doc, dict) and "properties" in node:
        return {k: prune_nulls(v, node["properties"].get(k, {})) for k, v in doc.items()
                if not (v is None and not node["properties"].get(k, {}).get("nullable"))}
    if isinstance(doc, list) and isinstance(node.get("items"), dict):
        return [prune_nulls(x, node["items"]) for x in doc]
    return doc


def spec_schema(filename: str) -> dict:
    crd = yaml.safe_load(render_crds()[filename].split("\n", 1)[1])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


MODEL_SPEC = spec_schema("shardwise.io_shardedmodels.yaml")
DATASET_SPEC = spec_schema("shardwise.io_datasets.yaml")


def crd_accepts(spec: dict, schema: dict = MODEL_SPEC) -> bool:
    return not list(jsonschema.Draft7Validator(to_jsonschema(schema)).iter_errors(prune_nulls(spec, schema)))


def pydantic_accepts(spec: dict, model: type = ShardedModelSpec) -> bool:
    try:
        model.model_validate(spec)
        return True
    except ValidationError:
        return False


@pytest.mark.parametrize("spec,ok", [
    ({"datasetRef": "digits"}, True),
    ({"datasetRef": "digits", "shards": 0}, False),
    ({"datasetRef": "Bad_Name"}, False),
    ({"datasetRef": "digits", "aggregation": "max"}, False),
    ({"datasetRef": "digits", "training": {"learningRate": 0}}, False),
    ({"datasetRef": "digits", "training": {"learningRate": 1e-9}}, True),
    ({"datasetRef": "digits", "training": {"learningRate": 10}}, True),
    ({"datasetRef": "digits", "training": {"momentum": 0.99}}, True),
    ({"datasetRef": "digits", "training": {"momentum": 1}}, False),
    ({"datasetRef": "digits", "training": {"optimizer": "rmsprop"}}, False),
    ({"datasetRef": "digits", "groupBy": "person"}, False),
    ({"datasetRef": "digits", "resources": {"queueName": None, "nodeSelector": {"a": "b"}}}, True),
    ({"datasetRef": "digits", "resources": {"nodeSelector": {"a": 1}}}, False),
    ({"datasetRef": "digits", "resources": {"gpus": 17}}, False),
    ({"datasetRef": "x" * 64}, False),
    ({}, False),
])
def test_schema_and_pydantic_agree_on_examples(spec, ok):
    assert crd_accepts(spec) is ok and pydantic_accepts(spec) is ok


@pytest.mark.parametrize("spec,ok", [
    ({"source": {"builtin": "digits"}}, True),
    ({"source": {"builtin": "digits", "format": None}}, True),  # pruned by the API server, None in pydantic
    ({"source": {"builtin": "mnist"}}, False),
    ({"source": {"uri": "s3://b/k.csv", "format": "parquet"}}, False),
    ({"source": {"builtin": "digits", "imageSize": 3}}, False),
    ({"source": {"builtin": "digits"}, "testFraction": 0.95}, False),
    ({"source": {"builtin": "digits"}, "seed": -1}, False),
    ({"testFraction": 0.1}, False),
])
def test_dataset_schema_and_pydantic_agree_on_examples(spec, ok):
    assert crd_accepts(spec, DATASET_SPEC) is ok and pydantic_accepts(spec, DatasetSpec) is ok


def test_known_differences_between_the_crd_and_pydantic():
    """Where they cannot agree, by design: these would fail if a change made the CRD stricter or looser."""
    # Unknown fields: pydantic forbids them (extra="forbid"); the API server prunes them (structural schema,
    # no additionalProperties: false), so a typo is dropped on write instead of refused.
    assert crd_accepts({"datasetRef": "digits", "shardz": 3}) and not pydantic_accepts({"datasetRef": "digits",
                                                                                         "shardz": 3})
    # Cross-field rules are CEL in the CRD (x-kubernetes-validations, tested below), which JSON schema ignores.
    assert crd_accepts({"source": {}}, DATASET_SPEC) and not pydantic_accepts({"source": {}}, DatasetSpec)
    assert crd_accepts({"datasetRef": "d", "architecture": {"hiddenUnits": [0]}})
    assert not pydantic_accepts({"datasetRef": "d", "architecture": {"hiddenUnits": [0]}})


@settings(max_examples=150, deadline=None)
@given(
    shards=st.integers(-3, 1100), slices=st.integers(-3, 1100), par=st.integers(-1, 1100),
    agg=st.sampled_from(["softmax-mean", "vote", "max", ""]),
    lr=st.one_of(st.sampled_from([0.0, 5e-324, 10.0, 10.000001]), st.floats(-1, 20, allow_nan=False)),
    momentum=st.one_of(st.sampled_from([0.0, 1.0, 0.9999999, -0.0]), st.floats(-1, 2, allow_nan=False)),
    name=st.from_regex(r"[a-zA-Z0-9_-]{0,70}", fullmatch=True),
)
def test_schema_and_pydantic_agree_on_bounds_enums_and_names(shards, slices, par, agg, lr, momentum, name):
    spec = {"datasetRef": name, "shards": shards, "slices": slices, "maxParallelShards": par,
            "aggregation": agg, "training": {"learningRate": lr, "momentum": momentum}}
    assert crd_accepts(spec) == pydantic_accepts(spec)


def test_main_crds_writes_prints_and_removes_stale_files(tmp_path, capsys):
    (tmp_path / "shardwise.io_olds.yaml").write_text("stale")
    (tmp_path / "unrelated.yaml").write_text("kept")
    assert main_crds(str(tmp_path)) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(tmp_path / name) for name in render_crds())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*render_crds(), "unrelated.yaml"])
    assert write_crds(tmp_path) == [tmp_path / name for name in render_crds()]
    text = (tmp_path / "shardwise.io_datasets.yaml").read_text()
    assert text.startswith("# Generated by `shardwise crds` from shardwise.api — do not edit.\n")
    crd = yaml.safe_load(text)
    assert crd["metadata"]["name"] == "datasets.shardwise.io" and crd_for(Dataset) == crd


def _rules(kind: str) -> list[dict]:
    return crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"]


def _allowed(kind: str, old: dict, new: dict) -> list[str]:
    """The CEL transition rules as the API server evaluates them: the messages of the rules that fail."""
    cel = pytest.importorskip("cel", reason="common-expression-language is in the test extra")
    return [r["message"] for r in _rules(kind) if not cel.evaluate(r["rule"], {"self": new, "oldSelf": old})]


def test_cel_rules_make_the_trained_shape_immutable():
    old = ShardedModelSpec(datasetRef="digits").model_dump(mode="json")
    assert _allowed("ShardedModel", old, old) == []
    assert _allowed("ShardedModel", old, {**old, "maxParallelShards": 2, "aggregation": "vote"}) == []
    assert _allowed("ShardedModel", old, {**old, "training": {**old["training"], "epochsPerSlice": 3}}) == [
        "spec.training is immutable"]  # the published version's shards were trained with the old settings
    assert _allowed("ShardedModel", old, {**old, "architecture": {"kind": "cnn"}, "groupBy": "none"}) == [
        "spec.groupBy is immutable", "spec.architecture is immutable"]
    assert _allowed("ShardedModel", old, {**old, "shards": 8}) == ["spec.shards is immutable"]
    assert _allowed("ShardedModel", old, {**old, "slices": 2, "datasetRef": "other"}) == [
        "spec.datasetRef is immutable", "spec.slices is immutable"]
    fr = {"datasetRef": "d", "ownerKey": "p", "sampleIds": [], "deadlineDays": 30}
    assert _allowed("ForgetRequest", fr, fr) == []
    assert _allowed("ForgetRequest", fr, {**fr, "ownerKey": "q"}) == ["spec.ownerKey is immutable"]
    assert _allowed("ForgetRequest", fr, {**fr, "deadlineDays": 60}) == ["spec.deadlineDays is immutable"]
    ds = {"source": {"builtin": "digits"}, "testFraction": 0.2, "seed": 0}
    assert _allowed("Dataset", ds, {**ds, "testFraction": 0.3}) == ["spec.testFraction is immutable"]


def _cross_field(kind: str, spec: dict) -> list[str]:
    """Messages of the CRD's cross-field CEL rules (those without oldSelf) that refuse `spec`, nested ones too."""
    cel = pytest.importorskip("cel", reason="common-expression-language is in the test extra")
    root = crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    out, todo = [], [(root, spec)]
    while todo:
        node, value = todo.pop()
        for r in node.get("x-kubernetes-validations", []):
            if "oldSelf" not in r["rule"] and not cel.evaluate(r["rule"], {"self": value}):
                out.append(r["message"])
        for name, sub in node.get("properties", {}).items():
            if isinstance(value, dict) and isinstance(value.get(name), dict):
                todo.append((sub, value[name]))
    return out


@pytest.mark.parametrize("kind,model,spec", [
    ("Dataset", DatasetSpec, {"source": {"builtin": "digits"}}),
    ("Dataset", DatasetSpec, {"source": {"uri": "s3://b/k.csv"}}),
    ("Dataset", DatasetSpec, {"source": {}}),
    ("Dataset", DatasetSpec, {"source": {"builtin": "digits", "uri": "s3://b/k.csv"}}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d", "ownerKey": "p"}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d", "sampleIds": ["a"]}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d", "sampleIds": [], "ownerKey": "p"}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d", "sampleIds": ["a"], "ownerKey": "p"}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d"}),
    ("ForgetRequest", ForgetRequestSpec, {"datasetRef": "d", "sampleIds": []}),
    ("Experiment", ExperimentSpec, {"datasetRef": "d", "modelRef": "m"}),
    ("Experiment", ExperimentSpec, {"datasetRef": "d", "train": {"shards": 2}}),
    ("Experiment", ExperimentSpec, {"datasetRef": "d"}),
    ("Experiment", ExperimentSpec, {"datasetRef": "d", "modelRef": "m", "train": {}}),
    ("Correction", CorrectionSpec, {"datasetRef": "d", "author": "a", "relabel": [{"id": "x", "label": "1"}]}),
    ("Correction", CorrectionSpec, {"datasetRef": "d", "author": "a", "drop": ["x"]}),
    ("Correction", CorrectionSpec, {"datasetRef": "d", "author": "a"}),
    ("Correction", CorrectionSpec, {"datasetRef": "d", "author": "a", "relabel": [], "drop": []}),
    ("Correction", CorrectionSpec, {"datasetRef": "d", "author": "a", "relabel": [{"id": "x", "label": "1"}],
                                    "drop": ["y"]}),
])
def test_cross_field_cel_rules_agree_with_pydantic_and_say_the_same(kind, model, spec):
    refused = _cross_field(kind, spec)
    try:
        model.model_validate(spec)
        assert refused == []
    except ValidationError as e:
        assert len(refused) == 1 and refused[0] in str(e)


def test_cel_rule_makes_an_experiments_training_spec_immutable():
    tested = {"modelRef": "m", "datasetRef": "d", "split": "test"}
    trains = {"datasetRef": "d", "split": "test", "train": {"shards": 2, "slices": 1}}
    assert _allowed("Experiment", tested, {**tested, "split": "all"}) == []
    assert _allowed("Experiment", trains, {**trains, "baselineRef": "b"}) == []
    assert _allowed("Experiment", trains,
                    {**trains, "train": {"shards": 3, "slices": 1}}) == ["spec.train is immutable"]
    assert _allowed("Experiment", tested, trains) == ["spec.train is immutable"]
    assert _allowed("Experiment", trains, tested) == ["spec.train is immutable"]


def test_every_string_list_and_map_under_a_transition_rule_is_bounded():
    """The API server estimates a CEL rule's cost from maxLength / maxItems / maxProperties and
    refuses the CRD when the estimate is over budget: an unbounded string is costed at megabytes."""
    from shardwise.api.immutable import IMMUTABLE

    def unbounded(node: dict, path: str):
        t = node.get("type")
        if t == "string" and "maxLength" not in node and "enum" not in node:
            yield path
        if t == "array":
            if "maxItems" not in node:
                yield path
            yield from unbounded(node.get("items", {}), path + "[]")
        if t == "object":
            if isinstance(node.get("additionalProperties"), dict):
                if "maxProperties" not in node:
                    yield path
                yield from unbounded(node["additionalProperties"], path + "{}")
            for k, v in (node.get("properties") or {}).items():
                yield from unbounded(v, f"{path}.{k}")

    for kind, fields in IMMUTABLE.items():
        spec = crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for f in fields:
            assert list(unbounded(spec["properties"][f], f"{kind}.spec.{f}")) == []


def test_conditions_are_metav1_conditions():
    from pydantic import ValidationError as VE

    from shardwise.api.common import Condition
    from shardwise.api.dataset import DatasetStatus

    st = DatasetStatus(observedGeneration=3)
    st.set_condition("Ready", "True", "Ingested", "revision 1")
    (c,) = st.conditions
    assert c.observedGeneration == 3 and c.reason == "Ingested"
    st.observedGeneration = 4
    st.set_condition("Ready", "True", "Ingested", "revision 2")  # same status: no new transition, generation moves
    assert st.conditions[0].observedGeneration == 4 and st.conditions[0].lastTransitionTime == c.lastTransitionTime
    for bad in ("", "not camel case", "9Lives"):
        with pytest.raises(VE):
            Condition(type="Ready", status="True", reason=bad)
    for cls in KINDS.values():
        conds = crd_for(cls)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
            "properties"]["conditions"]
        assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
        item = conds["items"]
        assert {"type", "status", "reason"} <= set(item["required"])
        assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_a_non_finite_number_kept_from_another_tool_reads_back_the_same():
    """Found by the fuzz suite: NaN dumps as null, which exclude_none did not drop, so the stored form and its
    read-back differed."""
    import json

    from shardwise.api import ForgetRequest

    r = ForgetRequest.model_validate({"apiVersion": "shardwise.io/v1alpha1", "kind": "ForgetRequest",
                                      "metadata": {"name": "d"}, "spec": {"datasetRef": "d", "ownerKey": "o"},
                                      "status": {"": float("nan"), "phase": "Pending"}})
    doc = r.to_doc()
    assert "" not in doc["status"]
    assert ForgetRequest.model_validate(json.loads(json.dumps(doc))).to_doc() == doc


def test_a_figure_in_a_status_is_shown_to_four_decimals_whichever_way_it_is_set():
    """kubectl cannot format a printer column, so the status holds the figure as it should be read; the
    store keeps the exact one."""
    from shardwise.api import Experiment, ShardedModel

    st = ShardedModel.model_validate({"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel",
                                      "metadata": {"name": "m"}, "spec": {"datasetRef": "d"},
                                      "status": {"accuracy": 0.822222222}}).status
    assert st.accuracy == 0.8222
    st.accuracy = 2 / 3  # as a reconcile pass sets it
    assert st.accuracy == 0.6667
    x = Experiment.model_validate({"apiVersion": "shardwise.io/v1alpha1", "kind": "Experiment",
                                   "metadata": {"name": "x"}, "spec": {"datasetRef": "d", "modelRef": "m"},
                                   "status": {}})
    x.status.macroF1, x.status.calibrationError, x.status.accuracyDelta = 0.123456, 0.0312345, -0.00004
    assert (x.status.macroF1, x.status.calibrationError, x.status.accuracyDelta) == (0.1235, 0.0312, -0.0)
    assert x.to_doc()["status"]["macroF1"] == 0.1235
