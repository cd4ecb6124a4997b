"""Fuzzed forget lists: sample ids and owner keys, through StoreControl.accept_forgets and `shardwise forget`.

A request is accepted exactly when every id it names (or its owner key) is in the
Dataset, as written; otherwise it is refused with a message naming the field, and
the store is left as it was, byte for byte. Accepted requests tombstone exactly
their samples, all in one new revision.
"""

from __future__ import annotations

import csv
import io
import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from shardwise.api import Dataset, ForgetRequest
from shardwise.cli import main
from shardwise.control import StoreControl
from shardwise.local.manifests import describe_validation
from shardwise.local.registry import Registry
from shardwise.store.local import LocalStore
from tests.fuzz.common import NASTY_STRINGS, TALLY, dns_label, fuzz, printable, snapshot

DS = "people"
IDS = [f"s-{i}" for i in range(20)] + ["../etc/passwd", "a/b", "ünï", "x y", "🦀", "a,b", 'q"uote', "NaN", "-1", "0",
                                       "e\u0301", "\u202eevil"]
OWNERS = ["alice", "bob", "../carol", "dave ü", "", "e,f", "🦀"]
_n = itertools.count()


def _csv() -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "owner", "f1", "f2"])
    for i, sid in enumerate(IDS):
        w.writerow([sid, i % 3, OWNERS[i % len(OWNERS)], i * 0.5, -i])
    return buf.getvalue()


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    """A store with Dataset `people` ingested (revision 1) and registered."""
    tmp = tmp_path_factory.mktemp("forget-seed")
    (tmp / "people.csv").write_text(_csv(), encoding="utf-8")
    root = tmp / "store"
    store = LocalStore(root)
    ds = Dataset.model_validate({"kind": "Dataset", "metadata": {"name": DS},
                                 "spec": {"source": {"uri": str(tmp / "people.csv")}}})
    Registry(store, "default").apply(ds)
    status = StoreControl(store, "default").reconcile_dataset(ds)
    assert status.phase == "Ready" and status.samples == len(IDS), status
    return root


def fresh(seed: Path, base: Path) -> Path:
    root = base / f"s{next(_n)}"
    shutil.copytree(seed, root)
    return root


# ---------------------------------------------------------------------------
# StoreControl.accept_forgets: what both bodies call
# ---------------------------------------------------------------------------

id_text = st.one_of(st.sampled_from(IDS), st.sampled_from(NASTY_STRINGS), st.text(max_size=12),
                    st.sampled_from(IDS).map(lambda s: s + "\x00"), st.sampled_from(IDS).map(lambda s: f" {s}"))
owner_text = st.one_of(st.sampled_from([o for o in OWNERS if o]), st.sampled_from(NASTY_STRINGS),
                       st.text(max_size=12), st.sampled_from(["alice\x00", "alice ", "ALICE", "sha256:00"]))
known_ids = st.lists(st.sampled_from(IDS), min_size=1, max_size=5)
known_owner = st.sampled_from([o for o in OWNERS if o])
request_spec = st.one_of(
    st.fixed_dictionaries({"datasetRef": st.just(DS), "sampleIds": known_ids}),
    st.fixed_dictionaries({"datasetRef": st.just(DS), "ownerKey": known_owner}),
    st.fixed_dictionaries({"datasetRef": st.just(DS), "sampleIds": st.lists(id_text, max_size=5)}),
    st.fixed_dictionaries({"datasetRef": st.just(DS), "ownerKey": owner_text}),
    st.fixed_dictionaries({"datasetRef": st.just(DS), "sampleIds": st.lists(id_text, min_size=1, max_size=2),
                           "ownerKey": owner_text}),
)


def expected(spec: dict[str, Any]) -> list[str] | None:
    """The ids a request forgets when accepted; None when it must be refused."""
    if "ownerKey" in spec:
        hit = [i for i, o in zip(IDS, itertools.cycle(OWNERS)) if o and o == spec["ownerKey"]]
        return hit or None
    return list(dict.fromkeys(spec["sampleIds"])) if all(s in IDS for s in spec["sampleIds"]) else None


@fuzz(60)
@given(specs=st.lists(request_spec, min_size=1, max_size=3))
@example(specs=[{"datasetRef": DS, "ownerKey": "alice\x00"}])  # numpy compares 'alice\0' equal to 'alice'
def _accept_forgets(tmp_path_factory, seed: Path, specs: list[dict[str, Any]]) -> None:
    prop = "forget: StoreControl.accept_forgets"
    root = fresh(seed, tmp_path_factory.getbasetemp())
    before = snapshot(root)
    requests, want = [], {}
    for j, spec in enumerate(specs):
        try:
            fr = ForgetRequest.model_validate({"kind": "ForgetRequest", "metadata": {"name": f"fr-{j}"}, "spec": spec})
        except ValidationError as e:  # refused at the boundary: never reaches the store
            TALLY.seen(prop, accepted=False)
            msg = describe_validation(e)
            assert "spec.sampleIds" in msg or "spec.ownerKey" in msg, msg
            continue
        requests.append(fr)
        want[fr.name] = expected(spec)
    control = StoreControl(LocalStore(root), "default")
    result = control.accept_forgets(DS, requests) if requests else {}
    assert set(result) == set(want)
    forgotten: set[str] = set()
    for name, st_ in result.items():
        if want[name] is None:
            TALLY.seen(prop, accepted=False)
            assert st_.phase == "Failed", (name, st_)
            cond = st_.condition("Failed")
            assert cond is not None and cond.reason == "UnknownSamples"
            assert st_.message.startswith(("spec.sampleIds: ", "spec.ownerKey: ")), st_.message
        else:
            TALLY.seen(prop, accepted=True)
            assert st_.phase == "Retraining" and st_.datasetRevision == 2, (name, st_)
            forgotten |= set(want[name])
    if not forgotten:
        assert snapshot(root) == before, "a refused forget changed the store"
    else:
        view = control.view(DS)
        assert view.state.revision == 2
        gone = set(IDS) - set(np.asarray(view.table.ids).tolist())  # forgotten rows leave the payload
        assert gone == forgotten, (gone ^ forgotten)
        key = control.datasets.key(DS)  # and leave only a keyed tag each
        assert set(view.forgotten.id_tag.tolist()) == {key.tag("id", i) for i in forgotten}
    shutil.rmtree(root)


def test_accept_forgets_tombstones_exactly_what_was_named(tmp_path_factory, seed):
    _accept_forgets(tmp_path_factory, seed)
    TALLY.require("forget: StoreControl.accept_forgets")


# ---------------------------------------------------------------------------
# `shardwise forget`
# ---------------------------------------------------------------------------

# argv cannot hold NUL (exec refuses it), so the CLI never sees one
cli_text = st.one_of(st.sampled_from([s for s in NASTY_STRINGS if "\x00" not in s]),
                     st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12))


@st.composite
def forget_args(draw) -> tuple[list[str], bytes | None]:
    """argv after `forget`, and the bytes of the --ids-file when one is used; one part fuzzed, or none."""
    fault = draw(st.sampled_from(["none", "dataset", "selector", "name"]))
    dataset = draw(st.one_of(st.just("nobody"), cli_text)) if fault == "dataset" else DS
    args = [f"--dataset={dataset}", "--no-wait"]
    ids = st.one_of(st.sampled_from(IDS), cli_text) if fault == "selector" else st.sampled_from(IDS)
    how = draw(st.sampled_from(["owner", "ids", "ids-file"]))
    data = None
    if how == "owner":
        owner = draw(cli_text) if fault == "selector" else draw(st.sampled_from([o for o in OWNERS if o]))
        args.append(f"--owner={owner}")
    elif how == "ids":
        args.append("--ids=" + ",".join(i for i in draw(st.lists(ids, min_size=1, max_size=4)) if "," not in i))
    else:
        data = "\n".join(draw(st.lists(ids, max_size=4))).encode()
        if fault == "selector" and draw(st.booleans()):
            data = draw(st.binary(max_size=20)) + data  # often not UTF-8
        args.append("--ids-file=IDS_FILE")
    if fault == "name":
        args.append(f"--name={draw(cli_text)}")
    elif draw(st.booleans()):
        args.append("--name=fr-x")
    return args, data


@fuzz(80)
@given(case=forget_args())
@example(case=(["--dataset=people", "--no-wait", "--owner=alice", "--name=Bad_Name"], None))
@example(case=(["--dataset=people", "--no-wait", "--ids-file=IDS_FILE"], b"\xff\xfe"))
@example(case=(["--dataset=../x", "--no-wait", "--owner=alice"], None))
def _forget_cli(tmp_path_factory, capsys, seed: Path, case) -> None:
    prop = "forget: shardwise forget"
    args, data = case
    root = fresh(seed, tmp_path_factory.getbasetemp())
    if data is not None:
        ids_file = root.parent / f"{root.name}.ids"
        ids_file.write_bytes(data)
        args = [a.replace("IDS_FILE", str(ids_file)) for a in args]
    before = snapshot(root)
    capsys.readouterr()
    rc = main(["--store", str(root), *["forget", *args]])
    out, err = capsys.readouterr()
    after = snapshot(root)
    shutil.rmtree(root)
    assert "Traceback" not in err + out
    opt = dict(a[2:].split("=", 1) for a in args if "=" in a)
    if rc == 0:
        TALLY.seen(prop, accepted=True)
        new = sorted(set(after) - set(before))
        assert [k for k in new if k.endswith(".json")] == [
            k for k in new if k.startswith("default/resources/forgetrequests/") and k.endswith(".json")] and new, new
        assert opt["dataset"] == DS and dns_label(opt.get("name", "forget-x"))
        return
    TALLY.seen(prop, accepted=False)
    assert rc == 1 and err.startswith("error: ") and not out and printable(err), (rc, out, err)
    assert after == before, f"a refused forget changed the store: {err}"
    # the message names the option (or the spec field it fills) at fault
    fields = ("--dataset", "--name", "--ids", "--ids-file", "--owner", "spec.sampleIds", "spec.ownerKey")
    assert any(f in err for f in fields), err
    if not dns_label(opt["dataset"]):
        assert "--dataset" in err, err
    elif opt["dataset"] != DS:  # a well-formed name that is not there; a bad --name is found first
        assert "--dataset" in err or "--name" in err, err
    elif "name" in opt and not dns_label(opt["name"]):  # unless the ids or owner were refused first
        assert any(f in err for f in ("--name", "--ids-file", "spec.")), err


def test_shardwise_forget_files_the_request_or_names_the_option(tmp_path_factory, capsys, seed):
    _forget_cli(tmp_path_factory, capsys, seed)
    TALLY.require("forget: shardwise forget")
