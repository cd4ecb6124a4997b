"""Fuzzed resource documents: the API models, manifests through `shardwise apply`, and the kube body.

Every document is either accepted or refused with a message that names the
field at fault; no other exception escapes, a refused `apply` writes nothing,
and the operator turns a bad spec into an InvalidSpec condition instead of
raising (which would make kopf retry it forever).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from kopf._core.engines import posting  # the context kopf.warn posts into, as the operator sets it
from pydantic import ValidationError

from shardwise.api import KINDS
from shardwise.api.common import API
from shardwise.cli import main
from shardwise.errors import InvalidInput
from shardwise.kube.body import Body
from shardwise.kube.settings import OperatorSettings
from shardwise.local.manifests import describe_validation, load_manifests, parse_doc
from tests.fuzz.common import TALLY, fuzz, garbage, names_field, printable, snapshot
from tests.fuzz.strategies import Mutation, mutated_doc

_files = itertools.count()


# ---------------------------------------------------------------------------
# the models, one document at a time
# ---------------------------------------------------------------------------


def check_document(doc: Any, mutation: Mutation, prop: str) -> None:
    """parse_doc (the manifest path) and model_validate (the kube path) agree, and a refusal names the field."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    try:
        res = parse_doc(doc, "f.yaml document 1")
    except InvalidInput as e:
        msg = str(e)
        TALLY.seen(prop, accepted=False)
        assert mutation.op != "none", f"a valid document was refused: {msg}"
        assert msg.startswith("f.yaml document 1") and printable(msg), msg
        assert names_field(msg, mutation.path), f"{mutation}: the message does not name the field: {msg}"
        if isinstance(kind, str) and kind in KINDS and doc.get("apiVersion") == "shardwise.io/v1alpha1":
            with pytest.raises(ValidationError) as info:
                KINDS[kind].model_validate(doc)
            assert describe_validation(info.value) in msg
        return
    TALLY.seen(prop, accepted=True)
    # accepted: it is one resource of that kind, and its stored form reads back as the same resource
    assert res.kind == kind and type(res) is KINDS[kind]
    again = type(res).model_validate(json.loads(json.dumps(res.to_doc())))
    assert json.dumps(again.to_doc(), sort_keys=True) == json.dumps(res.to_doc(), sort_keys=True)


def _kind_property(kind: str):
    prop = f"specs: {kind}"

    @fuzz(200)
    @given(case=mutated_doc(kind))
    def run(case: tuple[dict[str, Any], Mutation]) -> None:
        check_document(*case, prop)

    def test() -> None:
        run()
        TALLY.require(prop)

    test.__name__ = f"test_{kind.lower()}_documents_are_accepted_or_name_the_field"
    return test


test_dataset_documents_are_accepted_or_name_the_field = _kind_property("Dataset")
test_shardedmodel_documents_are_accepted_or_name_the_field = _kind_property("ShardedModel")
test_forgetrequest_documents_are_accepted_or_name_the_field = _kind_property("ForgetRequest")
test_experiment_documents_are_accepted_or_name_the_field = _kind_property("Experiment")
test_correction_documents_are_accepted_or_name_the_field = _kind_property("Correction")


@fuzz(150)
@given(doc=garbage)
def _garbage_documents(doc: Any) -> None:
    try:
        parse_doc(doc, "f.yaml document 1")
    except InvalidInput as e:
        TALLY.seen("specs: garbage documents", accepted=False)
        assert str(e).startswith("f.yaml document 1"), e
        return
    raise AssertionError(f"garbage was accepted as a resource: {doc!r}")


def test_garbage_documents_are_refused():
    _garbage_documents()
    TALLY.require("specs: garbage documents", accepted=False)


# ---------------------------------------------------------------------------
# YAML files through load_manifests and `shardwise apply`
# ---------------------------------------------------------------------------

RAW_YAML = [
    "", "---\n---\n", "- a\n- b\n", "just text", "kind: Dataset", "{", "[", "a: b: c", "\t- x", "a: !!binary '!!!'",
    "a: !!python/object:os.system x", "a: !unknown x", "a: *nothing", "a: &x [*x]", "<<: 5",
    "metadata: {name: x, creationTimestamp: 2001-02-30}", "x: 2024-13-01T99:99:99Z", "x: 0o8", "x: 1e99999",
    "[" * 200 + "]" * 200, "{a: " * 60 + "1" + "}" * 60, "x: '\x00'", "\ufeffkind: Dataset", "%YAML 9.9\n---\nx: 1",
    "apiVersion: shardwise.io/v1alpha1\nkind: [Dataset]\nmetadata: {name: x}\n",
    "apiVersion: shardwise.io/v1alpha1\nkind: {a: 1}\n",
    "apiVersion: [shardwise.io/v1alpha1]\nkind: Dataset\n",
]


@st.composite
def manifest_files(draw) -> tuple[bytes, list[tuple[dict[str, Any], Mutation]]]:
    """File bytes and the documents in it (empty when the file is raw garbage)."""
    if draw(st.integers(0, 4)) == 0:
        raw = draw(st.one_of(st.sampled_from(RAW_YAML), st.text(max_size=200)))
        data = raw.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            data = draw(st.binary(max_size=40)) + data  # often not UTF-8
        return data, []
    kinds = draw(st.lists(st.sampled_from(list(KINDS)), min_size=1, max_size=3))
    mutate_at = draw(st.integers(0, len(kinds)))  # == len(kinds): no document is mutated
    docs = [draw(mutated_doc(k, ops=("replace", "delete", "add") if i == mutate_at else ("none",)))
            for i, k in enumerate(kinds)]
    return yaml.safe_dump_all([d for d, _ in docs], allow_unicode=draw(st.booleans())).encode(), docs


def load_verdict(path: Path, docs: list[tuple[dict[str, Any], Mutation]], prop: str) -> str | None:
    """None when load_manifests accepts the file, else the message; checks what the message names."""
    try:
        resources = load_manifests([path])
    except InvalidInput as e:
        msg = str(e)
        TALLY.seen(prop, accepted=False)
        assert msg.startswith(str(path)) and printable(msg), msg
        bad = [m for _, m in docs if m.op != "none"]
        if docs and not bad:
            assert "appears twice" in msg, f"valid documents were refused: {msg}"
        elif bad and "appears twice" not in msg:
            assert names_field(msg, bad[0].path), f"{bad[0]}: the message does not name the field: {msg}"
        return msg
    TALLY.seen(prop, accepted=True)
    assert len(resources) == len(docs)
    return None


# One Dataset twice with different sources: `apply` used to write the first, then refuse the second.
DUPLICATE = [({"apiVersion": API, "kind": "Dataset", "metadata": {"name": "d2"}, "spec": {"source": source}},
              Mutation("none", ())) for source in ({"builtin": "digits"}, {"uri": "x.csv"})]


@fuzz(120)
@given(case=manifest_files())
@example(case=(b"apiVersion: shardwise.io/v1alpha1\nkind: [Dataset]\nmetadata: {name: x}\n", []))  # TypeError
@example(case=(b"metadata: {name: x, creationTimestamp: 2001-02-30}\n", []))  # ValueError from the YAML loader
@example(case=(b"\xff\xfe kind: Dataset", []))  # UnicodeDecodeError
@example(case=(yaml.safe_dump_all([d for d, _ in DUPLICATE]).encode(), DUPLICATE))
def _manifest_files(tmp_path_factory, case) -> None:
    data, docs = case
    path = tmp_path_factory.getbasetemp() / f"m{next(_files)}.yaml"
    path.write_bytes(data)
    try:
        load_verdict(path, docs, "manifests: load_manifests")
    finally:
        path.unlink()


def test_manifest_files_load_whole_or_name_the_field(tmp_path_factory):
    _manifest_files(tmp_path_factory)
    TALLY.require("manifests: load_manifests")


@fuzz(80)
@given(case=manifest_files())
@example(case=(yaml.safe_dump_all([d for d, _ in DUPLICATE]).encode(), DUPLICATE))  # was half-applied
def _apply_cli(tmp_path_factory, capsys, seed: Path, case) -> None:
    data, docs = case
    n = next(_files)
    root = tmp_path_factory.getbasetemp() / f"store{n}"
    shutil.copytree(seed, root)  # every case starts from the same store
    path = tmp_path_factory.getbasetemp() / f"a{n}.yaml"
    path.write_bytes(data)
    before = snapshot(root)
    capsys.readouterr()
    try:
        rc = main(["--store", str(root), "apply", "-f", str(path), "--no-wait"])
        out, err = capsys.readouterr()
    finally:
        path.unlink()
    after = snapshot(root)
    shutil.rmtree(root)
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 0:
        TALLY.seen("manifests: shardwise apply", accepted=True)
        assert len(out.splitlines()) == len(docs) and not err, (out, err)
        changed = not all(line.endswith(" unchanged") for line in out.splitlines())
        assert (after != before) == changed, out
        return
    TALLY.seen("manifests: shardwise apply", accepted=False)
    assert rc == 1, (rc, err)
    assert err.startswith("error: ") and not out and printable(err), (out, err)
    assert after == before, f"a refused apply changed the store: {err}"
    bad = [m for _, m in docs if m.op != "none"]
    if bad and "appears twice" not in err and "immutable" not in err:
        assert names_field(err, bad[0].path), f"{bad[0]}: the message does not name the field: {err}"


def test_shardwise_apply_writes_all_or_nothing(tmp_path_factory, capsys, seeded_store):
    _apply_cli(tmp_path_factory, capsys, seeded_store)
    TALLY.require("manifests: shardwise apply")


# ---------------------------------------------------------------------------
# the kube body: a bad spec becomes a condition, never an exception
# ---------------------------------------------------------------------------


class FakeKube:
    """Records status patches, as the API server would apply them (JSON merge patch of .status)."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []

    async def patch_status(self, plural: str, ns: str, name: str, status: dict[str, Any]) -> None:
        json.dumps(status, allow_nan=False)  # what the API server would refuse
        self.patches.append((plural, ns, name, status))


def as_json(x: Any) -> Any:
    """What a Kubernetes body can hold: JSON (no NaN or inf, string keys)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {str(k): as_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [as_json(v) for v in x]
    return x


# The API server always sets these, whatever the user wrote.
K8S_META = (("metadata",), ("metadata", "name"), ("metadata", "namespace"))


@st.composite
def kube_bodies(draw) -> tuple[str, dict[str, Any], Mutation]:
    kind = draw(st.sampled_from(list(KINDS)))
    doc, mutation = draw(mutated_doc(kind, protect=K8S_META))
    doc = as_json(doc)
    doc["metadata"]["namespace"] = "team-a"
    # valid Kubernetes object names (DNS-1123 subdomains) that are not DNS-1123 labels, as Shardwise needs
    doc["metadata"]["name"] = draw(st.one_of(st.just(doc["metadata"]["name"]),
                                             st.sampled_from(["a.b", "x" * 70, "a" * 253])))
    if not isinstance(doc.get("status", {}), dict):
        doc["status"] = {}  # the CRD types .status as an object
    return kind, doc, mutation


async def _parse_twice(body: Body, cls, doc: dict[str, Any]):
    first = await body._parse(cls, doc)
    n = len(body.kube.patches)
    if first is None:  # what the next event brings: the object with the status the operator wrote
        doc = {**doc, "status": {**(doc.get("status") or {}), **body.kube.patches[-1][3]}}
    second = await body._parse(cls, doc)
    return first, second, n


@fuzz(150)
@given(case=kube_bodies())
def _kube_bodies(case) -> None:
    kind, doc, mutation = case
    cls = KINDS[kind]
    body = Body(FakeKube(), OperatorSettings())
    queue: asyncio.Queue = asyncio.Queue()

    async def go():
        posting.settings_var.set(kopf.OperatorSettings())
        posting.event_queue_var.set(queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        return await _parse_twice(body, cls, doc)

    first, second, n = asyncio.run(go())
    try:
        cls.model_validate(doc)
        valid = True
    except ValidationError as e:
        valid, msg = False, describe_validation(e)
    if valid:
        TALLY.seen("kube body: _parse", accepted=True)
        assert isinstance(first, cls) and isinstance(second, cls) and not body.kube.patches
        return
    TALLY.seen("kube body: _parse", accepted=False)
    if mutation.op == "none":  # only the name can make an unchanged body bad
        assert msg.startswith("metadata.name: "), msg
    assert first is None and n == 1, "a bad spec must give exactly one status patch"
    plural, ns, name, status = body.kube.patches[0]
    assert (plural, ns, name) == (cls.PLURAL, "team-a", doc["metadata"]["name"])
    assert status["phase"] == "Failed" and status["message"] == msg and printable(msg)
    assert status["conditions"][0]["reason"] == "InvalidSpec" and status["conditions"][0]["status"] == "False"
    if mutation.op != "none":
        assert names_field(msg, mutation.path) or "metadata.name" in msg, f"{mutation}: {msg}"
    event = queue.get_nowait()
    assert event.reason == "InvalidSpec" and event.type == "Warning"
    if second is None and len(body.kube.patches) > 1:  # still bad: patched again only if the message changed
        assert body.kube.patches[1][3]["message"] != msg


def test_kube_body_turns_a_bad_spec_into_an_invalid_spec_condition():
    _kube_bodies()
    TALLY.require("kube body: _parse")
