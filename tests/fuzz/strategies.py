"""Hypothesis strategies for resource documents: valid ones, and one mutation of a valid one."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from shardwise.api.common import API
from tests.fuzz.common import (
    HUGE_NUMBERS,
    NASTY_STRINGS,
    SPECIAL_FLOATS,
    garbage,
    nasty_text,
)

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
# Sometimes one of the names the store already holds (tests/fuzz/test_fuzz_specs.py seeds "digits" and "m").
ref = st.one_of(st.sampled_from(["digits", "m", "fr", "x-1"]), label)
any_text = st.text(min_size=1, max_size=60)


_ABSENT = object()  # an optional field left out of the document


def _maybe(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not _ABSENT}


def _opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just(_ABSENT), strategy)


@st.composite
def metadata(draw) -> dict[str, Any]:
    return _maybe({
        "name": draw(ref),
        "namespace": draw(_opt(st.just("default"))),
        "labels": draw(_opt(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=2))),
        "annotations": draw(_opt(st.dictionaries(any_text, any_text, max_size=2))),
        "generation": draw(_opt(st.integers(1, 50))),
    })


@st.composite
def dataset_spec(draw) -> dict[str, Any]:
    if draw(st.booleans()):
        source = _maybe({"builtin": "digits", "ownersPerSample": draw(_opt(st.integers(0, 10_000)))})
    else:
        source = _maybe({
            "uri": draw(st.text(min_size=1, max_size=200)),
            "format": draw(_opt(st.sampled_from(["csv", "jsonl", "images", None]))),
            "idColumn": draw(_opt(st.text(max_size=128))),
            "labelColumn": draw(_opt(st.text(max_size=20))),
            "featuresColumn": draw(_opt(st.text(max_size=20))),
            "labelsFile": draw(_opt(st.text(max_size=40))),
            "imageSize": draw(_opt(st.integers(4, 256))),
        })
    return _maybe({
        "source": source,
        "testFraction": draw(_opt(st.floats(0.0, 0.9))),
        "seed": draw(_opt(st.integers(0, 2**31 - 1))),
    })


@st.composite
def model_spec(draw) -> dict[str, Any]:
    return _maybe({
        "datasetRef": draw(ref),
        "shards": draw(_opt(st.integers(1, 1024))),
        "slices": draw(_opt(st.integers(1, 1024))),
        "groupBy": draw(_opt(st.sampled_from(["owner", "none"]))),
        "architecture": draw(_opt(st.fixed_dictionaries({}, optional={
            "kind": st.sampled_from(["mlp", "cnn"]),
            "hiddenUnits": st.lists(st.integers(1, 65536), max_size=8),
        }))),
        "training": draw(_opt(st.fixed_dictionaries({}, optional={
            "epochsPerSlice": st.integers(1, 1000),
            "batchSize": st.integers(1, 65536),
            "learningRate": st.floats(1e-9, 10.0),
            "optimizer": st.sampled_from(["adam", "sgd"]),
            "momentum": st.floats(0.0, 0.999),
            "weightDecay": st.floats(0.0, 1.0),
            "seed": st.integers(0, 2**31 - 1),
        }))),
        "aggregation": draw(_opt(st.sampled_from(["softmax-mean", "vote"]))),
        "maxParallelShards": draw(_opt(st.integers(1, 1024))),
        "storagePolicy": draw(_opt(st.sampled_from(["Retain", "Delete"]))),
        "resources": draw(_opt(st.fixed_dictionaries({}, optional={
            "gpus": st.integers(0, 16),
            "cpu": st.sampled_from(["1", "500m", "2"]),
            "memory": st.sampled_from(["2Gi", "512Mi"]),
            "nodeSelector": st.dictionaries(st.sampled_from(["pool", "zone"]), label, max_size=2),
            "tolerations": st.lists(st.fixed_dictionaries({"key": label, "operator": st.just("Exists")}), max_size=2),
            "priorityClassName": label,
            "queueName": label,
        }))),
    })


@st.composite
def forget_spec(draw) -> dict[str, Any]:
    spec: dict[str, Any] = {"datasetRef": draw(ref), "deadlineDays": draw(_opt(st.integers(1, 3650)))}
    key = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=256)
    if draw(st.booleans()):
        spec["sampleIds"] = draw(st.lists(key, min_size=1, max_size=6))
    else:
        spec["ownerKey"] = draw(key)
    return _maybe(spec)


@st.composite
def experiment_spec(draw) -> dict[str, Any]:
    return _maybe({
        "modelRef": draw(ref),
        "datasetRef": draw(ref),
        "modelVersion": draw(_opt(st.one_of(st.none(), st.integers(1, 10**6)))),
        "split": draw(_opt(st.sampled_from(["test", "train", "all"]))),
        "baselineRef": draw(_opt(st.one_of(st.none(), ref))),
    })


@st.composite
def correction_spec(draw) -> dict[str, Any]:
    ident = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=256)
    spec: dict[str, Any] = {"datasetRef": draw(ref), "author": draw(st.text(min_size=1, max_size=40))}
    ids = draw(st.lists(ident, min_size=1, max_size=4, unique=True))
    if draw(st.booleans()):
        spec["relabel"] = [{"id": i, "label": draw(st.text(min_size=1, max_size=8))} for i in ids]
    else:
        spec["drop"] = ids
    return _maybe(spec)


SPECS = {"Dataset": dataset_spec, "ShardedModel": model_spec, "ForgetRequest": forget_spec,
         "Experiment": experiment_spec, "Correction": correction_spec}


@st.composite
def valid_doc(draw, kind: str) -> dict[str, Any]:
    doc = {"apiVersion": API, "kind": kind, "metadata": draw(metadata()), "spec": draw(SPECS[kind]())}
    if draw(st.integers(0, 4)) == 0:
        doc["status"] = {"phase": draw(st.sampled_from(["Pending", "Ready", "Failed"])),
                         "message": draw(st.text(max_size=20))}
    return doc


# Field names the models know: adding one of these where it is not expected is a sharper mutation than a random key.
KNOWN_KEYS = ["name", "namespace", "uid", "generation", "labels", "builtin", "uri", "format", "ownersPerSample",
              "testFraction", "seed", "datasetRef", "shards", "slices", "sampleIds", "ownerKey", "modelRef",
              "modelVersion", "baselineRef", "status", "spec", "kind", "apiVersion", "hiddenUnits", "tolerations"]


@dataclass(frozen=True)
class Mutation:
    op: str  # none, replace, delete, add
    path: tuple[Any, ...]  # the field changed (for add: the new key's path)

    def __str__(self) -> str:
        return f"{self.op} {'.'.join(map(str, self.path)) or '(root)'}"


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def confusing(value: Any) -> st.SearchStrategy:
    """Values of the wrong type or out of range for a field that now holds `value`."""
    if isinstance(value, bool):
        return st.sampled_from([0, 1, "true", "yes", None, [True]])
    if isinstance(value, int):
        return st.one_of(st.sampled_from([*HUGE_NUMBERS, *SPECIAL_FLOATS, 0, -1, value + 0.5, str(value), True]),
                         st.integers())
    if isinstance(value, float):
        return st.one_of(st.sampled_from([*SPECIAL_FLOATS, *HUGE_NUMBERS, -1.0, str(value)]), st.floats())
    if isinstance(value, str):
        return st.one_of(st.sampled_from(NASTY_STRINGS), st.integers(), st.just([value]), st.just(None))
    return garbage


@st.composite
def mutated_doc(draw, kind: str, ops: tuple[str, ...] = ("none", "replace", "delete", "add"),
                protect: tuple[tuple[Any, ...], ...] = ()) -> tuple[dict[str, Any], Mutation]:
    """A valid document of `kind` with at most one change; the paths in `protect` are not replaced or deleted."""
    doc = draw(valid_doc(kind))
    op = draw(st.sampled_from(ops))
    if op == "none":
        return doc, Mutation("none", ())
    mutable = [p for p in paths(doc) if p not in protect]
    if op == "add":
        parents = [()] + [p for p in paths(doc) if isinstance(_get(doc, p), dict)]
        parent = draw(st.sampled_from(parents))
        key = draw(st.one_of(st.sampled_from(KNOWN_KEYS), nasty_text))
        target = _get(doc, parent)
        if key in target or (parent, key) in [((), "kind"), ((), "apiVersion")]:
            return doc, Mutation("none", ())
        target[key] = draw(st.one_of(garbage, st.sampled_from(["digits", "x", 3, [], {}])))
        return doc, Mutation("add", (*parent, key))
    if op == "delete":
        mutable = [p for p in mutable if isinstance(_get(doc, p[:-1]), dict)]
    path = draw(st.sampled_from(mutable))
    parent = _get(doc, path[:-1])
    if op == "delete":
        del parent[path[-1]]
        return doc, Mutation("delete", path)
    old = parent[path[-1]]
    new = draw(confusing(old))
    if path in (("kind",), ("apiVersion",)) and new in (API, *SPECS):
        return doc, Mutation("none", ())  # another valid kind makes it another resource, not a bad one
    parent[path[-1]] = copy.deepcopy(new)
    return doc, Mutation("replace", path)
