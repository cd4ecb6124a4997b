"""`shardwise report` over a real flow: train, diagnose, fix labels, retrain, diagnose again, compare.

digits (8x8 images), a 3 x 2 MLP, real torch training in the local body. Experiment "before"
tests version 1; labels are corrected from its label-issue candidates; Experiment "after" tests
the retrained version and names "before" as its baseline.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from shardwise.api import Experiment, ShardedModel
from shardwise.cli import main
from shardwise.diagnosis.predictions import Predictions
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.store.layout import Layout
from tests.helpers import dataset, experiment, model

NS = "default"
PNG = b"\x89PNG\r\n\x1a\n"
DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    from shardwise.store.local import LocalStore

    store = LocalStore(tmp_path_factory.mktemp("report") / "store")
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None)
    reg.apply(dataset())
    reg.apply(model("m", shards=3, slices=2, epochs=1))
    runner.run(timeout=300)
    # pinned, so it stays the report of version 1 after the retrain; applied once version 1 exists
    # (the brain tests a pinned modelVersion without waiting for it to be published)
    reg.apply(experiment("before", modelVersion=1))
    runner.run(timeout=300)
    before = store.get_json(Layout(NS).experiment_report("before"))
    # fix the labels the diagnosis points at (training samples, so the shards that hold them retrain)
    train = [c for c in before["labelIssues"]["candidates"] if c["train"]]
    fixes = {c["id"]: c["suggested"] for c in train[:5]}
    assert fixes, "the diagnosis flagged no training sample to fix"
    runner.control.relabel("digits", fixes, by="test")
    runner.run(timeout=300)
    reg.apply(experiment("after", baselineRef="before"))
    runner.run(timeout=300)
    return store, reg, fixes


def shown(delta: float) -> str:
    """A delta as the page writes it: signed, 4 decimals, ±0.0000 when it rounds to nothing."""
    return "±0.0000" if abs(delta) < 5e-5 else f"{delta:+.4f}"


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in DATA_URI.findall(page)]


def test_report_writes_one_self_contained_page_and_its_json(flow, tmp_path, capsys):
    store, reg, fixes = flow
    assert reg.require(ShardedModel, "m").status.publishedVersion == 2
    out = tmp_path / "after.html"
    assert main(["--store", str(store.root), "report", "after", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(tmp_path / "after.json")]
    page = out.read_text(encoding="utf-8")
    doc = json.loads((tmp_path / "after.json").read_text(encoding="utf-8"))

    # self-contained: no URL outside the embedded images, every src a data: URI, no script
    text = DATA_URI.sub("data:", page)
    assert not re.search(r"https?://", text, re.IGNORECASE) and "<script" not in text.lower()
    assert set(re.findall(r'\bsrc="([^"]{0,5})', page)) == {"data:"}
    images = pngs(page)
    assert images and all(p.startswith(PNG) and len(p) > len(PNG) for p in images)
    sizes = [Image.open(io.BytesIO(p)).size for p in images]
    assert sum(1 for w, h in sizes if w > 200 and h > 200) >= 3  # confusion, reliability, F1 and shard plots
    assert (48, 48) in sizes  # thumbnails of the 8x8 digits
    hardest = page.split("<h2>Hardest samples</h2>")[1].split("<h2>")[0]
    assert hardest.count('<img class="t"') == len(doc["hardest"]) > 0  # one thumbnail per hardest sample

    # the per-class table: all 10 digits, the figures of the JSON
    per_class = page.split("<h2>Per class</h2>")[1].split("</table>")[0]
    for row in doc["metrics"]["perClass"]:
        assert f"<td>{row['class']}</td><td class=\"n\">{row['precision']:.3f}</td>" in per_class
    assert [r["class"] for r in doc["metrics"]["perClass"]] == [str(d) for d in range(10)]

    # the JSON is the stored report plus the comparison with "before"
    stored = store.get_json(Layout(NS).experiment_report("after"))
    assert {k: v for k, v in doc.items() if k != "comparison"} == {k: v for k, v in stored.items() if k != "comparison"}
    assert doc["version"] == 2 and doc["datasetRevision"] == 2
    base = store.get_json(Layout(NS).experiment_report("before"))
    cmp = doc["comparison"]
    assert cmp["baseline"] == "before" and cmp["baselineVersion"] == 1
    for k in ("accuracy", "macroF1", "calibrationError"):
        assert cmp["deltas"][k] == pytest.approx(doc["metrics"][k] - base["metrics"][k])
    assert cmp["common"] == doc["samples"] == base["samples"]  # relabelling drops no sample
    assert len(cmp["perClass"]) == 10

    # flips, recomputed here from the stored predictions against the current labels
    everything = Predictions.from_npz(store.get_bytes(doc["predictionsKey"]))
    given = dict(zip(everything.ids.tolist(), np.array(everything.class_names)[everything.labels].tolist()))
    assert {i: given[i] for i in fixes} == fixes  # "after" was tested on the corrected labels
    cur = everything.split("test")
    old = Predictions.from_npz(store.get_bytes(base["predictionsKey"])).split("test")
    assert (cur.ids == old.ids).all()
    right_now, right_then = cur.predicted() == cur.labels, old.predicted() == cur.labels
    assert sorted(r["id"] for r in cmp["rightToWrong"]) == sorted(cur.ids[right_then & ~right_now].tolist())
    assert sorted(r["id"] for r in cmp["wrongToRight"]) == sorted(cur.ids[~right_then & right_now].tolist())

    section = page.split("<h2>Compared with before (version 1)</h2>")[1]
    assert shown(cmp["deltas"]["accuracy"]) in section and shown(cmp["deltas"]["macroF1"]) in section
    assert f"right → wrong: {len(cmp['rightToWrong'])}" in section
    assert f"wrong → right: {len(cmp['wrongToRight'])}" in section
    for r in cmp["rightToWrong"] + cmp["wrongToRight"]:
        assert f'title="{r["id"]}"' in section  # with its thumbnail


def test_the_baseline_report_has_no_comparison_and_defaults_to_the_experiments_name(flow, tmp_path, monkeypatch):
    store, _, _ = flow
    monkeypatch.chdir(tmp_path)
    assert main(["report", "before", "--store", str(store.root)]) == 0
    doc = json.loads((tmp_path / "before.json").read_text(encoding="utf-8"))
    page = (tmp_path / "before.html").read_text(encoding="utf-8")
    assert doc["comparison"] is None and doc["version"] == 1 and "Compared with" not in page
    assert "<h2>Label-issue candidates</h2>" in page


def test_an_experiment_that_has_not_run_is_refused_with_its_phase(flow, tmp_path, capsys):
    store, reg, _ = flow
    reg.apply(experiment("later", baselineRef="before"))  # stored, never reconciled
    assert main(["--store", str(store.root), "report", "later", "--out", str(tmp_path / "later.html")]) == 1
    err = capsys.readouterr().err
    assert "Experiment default/later has no report: it is Pending, not Succeeded" in err
    assert "shardwise reconcile" in err and not (tmp_path / "later.html").exists()
    assert main(["--store", str(store.root), "report", "nope"]) == 1
    assert "Experiment default/nope not found" in capsys.readouterr().err
    assert main(["--store", str(store.root), "report", "after", "--out", str(tmp_path / "x.json")]) == 1
    assert "--out" in capsys.readouterr().err
    reg.delete(Experiment, "later")


def test_a_stored_report_without_its_resource_is_still_rendered(flow, tmp_path, capsys):
    """A store the operator writes has reports but not the cluster's resources (nor one deleted here)."""
    store, _, _ = flow
    L = Layout(NS)
    store.put_json(L.experiment_report("from-cluster"), store.get_json(L.experiment_report("before")))
    out = tmp_path / "c.html"
    assert main(["--store", str(store.root), "report", "from-cluster", "--out", str(out)]) == 0
    assert "is not a resource of this store" in capsys.readouterr().err
    assert '<img class="t"' in out.read_text(encoding="utf-8")  # thumbnails from the stored Dataset
