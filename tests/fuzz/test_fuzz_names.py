"""Fuzzed names: '../', '/', unicode, control characters, very long strings, wherever a name is typed.

A name becomes part of a store key, so only DNS-1123 labels are accepted; every
other name is refused with a message that names it, before anything is written,
and never with a traceback.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from shardwise.cli import main
from shardwise.errors import InvalidInput
from shardwise.local.registry import kind_of
from shardwise.store.base import check_key
from shardwise.store.layout import Layout
from tests.fuzz.common import NASTY_STRINGS, TALLY, dns_label, fuzz, printable, snapshot

_n = itertools.count()

name_text = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(["digits", "m", "a", "a-b", "0", "x" * 63, "team-a"]),  # labels, some of them in the store
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True),
    st.text(max_size=70),
    st.text(st.sampled_from("aZ9-._/ \\\x00\n"), max_size=8),
)
# argv cannot carry NUL
cli_name = name_text.filter(lambda s: "\x00" not in s)


# ---------------------------------------------------------------------------
# the store layout: no name can reach outside its namespace's prefix
# ---------------------------------------------------------------------------

LAYOUT_KEYS = [
    lambda L, n: L.resource("datasets", n), lambda L, n: L.dataset_current(n), lambda L, n: L.dataset_revision(n, 3),
    lambda L, n: L.model(n, "u1"), lambda L, n: L.model("m", n), lambda L, n: L.checkpoint(n, "u", 1, 2, 3),
    lambda L, n: L.job_request("m", "u", n), lambda L, n: L.experiment_report(n), lambda L, n: L.ledger_entry(1, n),
]


@fuzz(300)
@given(ns=name_text, name=name_text, which=st.sampled_from(range(len(LAYOUT_KEYS))))
@example(ns="default", name="../../etc", which=0)
@example(ns="..", name="x", which=0)
def _layout(ns: str, name: str, which: int) -> None:
    try:
        key = LAYOUT_KEYS[which](Layout(ns), name)
    except Exception as e:  # noqa: BLE001 - the property is about which exception
        TALLY.seen("names: store layout", accepted=False)
        assert type(e).__name__ == "InvalidInput", f"{type(e).__name__}: {e}"
        bad = ns if not dns_label(ns) else name
        assert repr(bad) in str(e) and "DNS-1123" in str(e), e
        return
    TALLY.seen("names: store layout", accepted=True)
    assert dns_label(ns) and dns_label(name)
    assert check_key(key) == key and key.startswith(f"{ns}/")
    assert name in key.split("/") or f"{name}.json" in key.split("/") or any(
        p.endswith(f"-{name}.json") for p in key.split("/"))


def test_layout_keys_stay_inside_the_namespace():
    _layout()
    TALLY.require("names: store layout")


# ---------------------------------------------------------------------------
# names on the command line
# ---------------------------------------------------------------------------


@st.composite
def name_commands(draw) -> tuple[list[str], str]:
    """argv and the name fuzzed in it."""
    name = draw(cli_name)
    kind = draw(st.sampled_from(["datasets", "shardedmodel", "swfr", "experiments"]))
    cmd = draw(st.sampled_from(["get", "describe", "delete", "namespace", "predict", "forget", "relabel", "verify",
                                "kind"]))
    if name == "--" and cmd in ("get", "describe", "delete", "predict", "verify", "kind"):
        name = "-"  # argparse (CPython 3.11) turns a positional '--' after '--' into a list: not ours to test
    if cmd in ("get", "describe", "delete"):
        return [cmd, kind, "--", name], name  # '--': a name that starts with '-' is still a name
    if cmd == "namespace":
        return [f"--namespace={name}", "get", kind], name
    if cmd == "predict":
        return ["predict", "--", name, "rows.csv"], name
    if cmd == "forget":
        return ["forget", f"--dataset={name}", "--owner=subject-0001", "--no-wait"], name
    if cmd == "relabel":
        return ["relabel", f"--dataset={name}", "--id=digits-00001", "--label=3"], name
    if cmd == "verify":
        return ["verify", "--", name], name
    return ["get", "--", name], name


def _is_kind(word: str) -> bool:
    try:
        kind_of(word)
        return True
    except InvalidInput:
        return False


@fuzz(100)
@given(case=name_commands())
@example(case=(["delete", "datasets", "--", "../digits"], "../digits"))
@example(case=(["--namespace=../default", "get", "datasets"], "../default"))
@example(case=(["--namespace=--", "get", "datasets"], "--"))  # argparse hands back [] for it
@example(case=(["forget", "--dataset=../digits", "--owner=subject-0001", "--no-wait"], "../digits"))
def _cli_names(tmp_path_factory, capsys, seed: Path, case) -> None:
    argv, name = case
    root = tmp_path_factory.getbasetemp() / f"n{next(_n)}"
    shutil.copytree(seed, root)
    before = snapshot(root)
    capsys.readouterr()
    rc = main(["--store", str(root), *argv])
    out, err = capsys.readouterr()
    after = snapshot(root)
    shutil.rmtree(root)
    assert "Traceback" not in out + err
    if rc == 0:
        TALLY.seen("names: command line", accepted=True)
        # an empty optional name is no name: `get KIND ''` is `get KIND`, `verify ''` is `verify`
        # `get -- NAME` names a kind: it may pass only when NAME is one of the kinds' names
        assert dns_label(name) or argv[:2] == ["get", "--"] and _is_kind(name) \
            or name == "" and argv[0] in ("get", "verify")
        if argv[0] == "forget":  # the request is filed, nothing else
            assert {k for k in set(after) - set(before) if not k.endswith("forgetrequests")} == {
                k for k in after if k.startswith("default/resources/forgetrequests/forget-")}
        elif argv[0] != "delete":
            assert after == before, f"{argv} changed the store"
        return
    TALLY.seen("names: command line", accepted=False)
    assert rc == 1 and after == before, f"a refused {argv} changed the store: {err}"
    if argv[0] == "verify":  # verify reports a request with no certificate as a FAIL line
        assert f"FAIL no certificate for ForgetRequest {name!r}" in err, err
        return
    assert err.startswith("error: ") and not out and printable(err), (out, err)
    if not dns_label(name):  # names the option, or says which name it refuses
        assert repr(name) in err or "--dataset" in err or "--namespace" in err or "unknown kind" in err, err


def test_names_on_the_command_line_are_refused_before_any_write(tmp_path_factory, capsys, seeded_store, monkeypatch):
    monkeypatch.setenv("SHARDWISE_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    _cli_names(tmp_path_factory, capsys, seeded_store)
    TALLY.require("names: command line")


# ---------------------------------------------------------------------------
# names in manifests
# ---------------------------------------------------------------------------


good_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def manifest_names(draw) -> dict[str, str | None]:
    """name, namespace and the reference in the spec: one of them fuzzed (or none)."""
    fuzzed = draw(st.sampled_from(["none", "name", "namespace", "ref"]))
    return {
        "name": draw(name_text if fuzzed == "name" else good_label),
        "namespace": draw(name_text if fuzzed == "namespace" else st.sampled_from([None, "default"])),
        "ref": draw(name_text if fuzzed == "ref" else good_label),
    }


@fuzz(100)
@given(names=manifest_names(), kind=st.sampled_from(["Dataset", "ShardedModel", "ForgetRequest", "Experiment"]))
@example(names={"name": "../digits", "namespace": None, "ref": "digits"}, kind="Dataset")
@example(names={"name": "digits", "namespace": "../default", "ref": "digits"}, kind="Dataset")
def _manifest_names(tmp_path_factory, capsys, seed: Path, names: dict[str, str | None], kind: str) -> None:
    name, namespace, ref = names["name"], names["namespace"], names["ref"]
    specs = {"Dataset": {"source": {"builtin": "digits"}}, "ShardedModel": {"datasetRef": ref},
             "ForgetRequest": {"datasetRef": ref, "ownerKey": "subject-0001"},
             "Experiment": {"modelRef": ref, "datasetRef": ref}}
    meta = {"name": name} | ({"namespace": namespace} if namespace is not None else {})
    root = tmp_path_factory.getbasetemp() / f"mn{next(_n)}"
    shutil.copytree(seed, root)
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "shardwise.io/v1alpha1", "kind": kind, "metadata": meta,
                                    "spec": specs[kind]}))
    before = snapshot(root)
    capsys.readouterr()
    rc = main(["--store", str(root), "apply", "-f", str(path), "--no-wait"])
    out, err = capsys.readouterr()
    after = snapshot(root)
    shutil.rmtree(root)
    assert "Traceback" not in out + err
    good = dns_label(name) and namespace in (None, "default") and (kind == "Dataset" or dns_label(ref))
    if rc == 0:
        TALLY.seen("names: manifests", accepted=True)
        assert good, (name, namespace, ref, out)
        return
    TALLY.seen("names: manifests", accepted=False)
    assert rc == 1 and err.startswith("error: ") and printable(err) and after == before, (rc, err)
    if not dns_label(name):
        assert "metadata.name" in err, err
    elif namespace is not None and not dns_label(namespace):
        assert "metadata.namespace" in err, err
    elif kind != "Dataset" and not dns_label(ref):
        assert "Ref: " in err, err
    elif namespace not in (None, "default"):  # a good label, but not the namespace of the command
        assert "metadata.namespace" in err, err
    else:  # a good name may clash with what the store holds (an immutable field)
        assert "immutable" in err, err


def test_names_in_manifests_are_refused_before_any_write(tmp_path_factory, capsys, seeded_store):
    _manifest_names(tmp_path_factory, capsys, seeded_store)
    TALLY.require("names: manifests")
