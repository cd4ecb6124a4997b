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

from shardwise.api import KINDS, ShardedModel
from shardwise.api.crds import crd_for, render_crds
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
        ("Phase", ".status.phase"), ("Version", ".status.publishedVersion"), ("Shards", ".status.shardsReadyText"),
        ("Accuracy", ".status.accuracy"), ("Age", ".metadata.creationTimestamp")]


def _nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI's `nullable` in JSON-Schema terms, so jsonschema can judge like the API server."""
    if isinstance(node, dict):
        out = {k: _nullable_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable_to_jsonschema(x) for x in node]
    return node


SPEC_SCHEMA = _nullable_to_jsonschema(yaml.safe_load(render_crds()["shardwise.io_shardedmodels.yaml"].split("\n", 1)[1])
                                      ["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def crd_accepts(spec: dict) -> bool:
    return not list(jsonschema.Draft7Validator(SPEC_SCHEMA).iter_errors(spec))


def pydantic_accepts(spec: dict) -> bool:
    try:
        ShardedModelSpec.model_validate(spec)
        return True
    except ValidationError:
        return False


@pytest.mark.parametrize("spec,ok", [
    ({"datasetRef": "digits"}, True),
    ({"datasetRef": "digits", "shards": 0}, False),
    ({"datasetRef": "Bad_Name"}, False),
    ({"datasetRef": "digits", "aggregation": "max"}, False),
    ({"datasetRef": "digits", "training": {"learningRate": 0}}, False),
])
def test_schema_and_pydantic_agree_on_examples(spec, ok):
    assert crd_accepts(spec) is ok and pydantic_accepts(spec) is ok


@settings(max_examples=150, deadline=None)
@given(
    shards=st.integers(-3, 1100), slices=st.integers(-3, 1100), par=st.integers(-1, 1100),
    agg=st.sampled_from(["softmax-mean", "vote", "max", ""]), lr=st.floats(-1, 20, allow_nan=False),
    name=st.from_regex(r"[a-zA-Z0-9_-]{0,70}", fullmatch=True),
)
def test_schema_and_pydantic_agree_on_bounds_enums_and_names(shards, slices, par, agg, lr, name):
    spec = {"datasetRef": name, "shards": shards, "slices": slices, "maxParallelShards": par,
            "aggregation": agg, "training": {"learningRate": lr}}
    assert crd_accepts(spec) == pydantic_accepts(spec)
