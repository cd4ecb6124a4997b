"""The documented annotation sequence (README "The annotation loop"), run as a user runs it.

make_noisy_digits -> apply 01 (train) -> apply 02 (baseline Experiment) -> label-issue candidates
-> fixes made through the page's HTTP API (the calls the page makes; the page itself is driven
in a real browser by test_ui.py) -> `shardwise reconcile` (incremental retrain) -> apply 03 ->
`shardwise report after-fixes` shows the improvement against the baseline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shardwise.api import Experiment, ShardedModel
from shardwise.cli import main
from shardwise.datasets import DatasetStore
from shardwise.local.registry import Registry
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from tests.helpers import experiment
from tests.integration.test_ui_api import call, get, serving

pytestmark = pytest.mark.slow  # two trainings of a 5 x 2 model on 1,797 images, ~1 min
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "annotation"
NS, FIXES = "default", 8
L = Layout(NS)


def version_jobs(store: LocalStore, m: ShardedModel, n: int) -> list[dict]:
    """The training jobs a published version records (shard, fromSlice, computeSeconds)."""
    return store.get_json(L.version(m.name, m.metadata.uid, n)).get("jobs", [])


def test_train_diagnose_fix_in_the_page_retrain_and_compare(tmp_path, monkeypatch, capsys):
    # the example runs from the repository root; here from a copy of its folder
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "annotation",
                    ignore=shutil.ignore_patterns("noisy-digits"))
    subprocess.run([sys.executable, "examples/annotation/make_noisy_digits.py"], check=True, capture_output=True)
    flipped = set((tmp_path / "examples/annotation/noisy-digits/flipped.txt").read_text().split())
    store_dir = tmp_path / "store"
    sw = lambda *argv: main(["--store", str(store_dir), *argv])  # noqa: E731
    store, reg = LocalStore(store_dir), Registry(LocalStore(store_dir), NS)

    # 1. train, 2. the baseline Experiment (pinned to version 1)
    assert sw("apply", "-f", "examples/annotation/01-data-and-model.yaml") == 0
    assert sw("apply", "-f", "examples/annotation/02-experiment-before.yaml") == 0
    before = reg.require(Experiment, "before-fixes").status
    assert before.phase == "Succeeded" and before.modelVersion == 1 and before.labelIssues > FIXES

    # 3. candidates, and 4. fixes made through the page's API: accept the suggestion of the first few
    with serving(store) as srv:
        page = get(srv, f"/api/items?view=candidates&limit={FIXES}")
        fixes = page["items"]
        for it in fixes:
            status, doc, _ = call(srv, "POST", "/api/actions", {"id": it["id"], "action": "relabel",
                                                                 "label": it["suggested"]})
            assert status == 200, doc
        assert get(srv, "/api/info")["currentRevision"] == 1 + FIXES
    right = sum(it["id"] in flipped for it in fixes)
    assert right >= FIXES - 1, f"only {right} of the top {FIXES} candidates were flipped on purpose"

    # 5. incremental retrain: only the shards holding a fixed training sample, from its slice
    assert sw("reconcile") == 0
    m = reg.require(ShardedModel, "noisy-mlp")
    assert m.status.publishedVersion == 2
    v = DatasetStore(store, L).view("noisy-digits", 1 + FIXES)
    a = v.assignment(m.spec.shards, m.spec.slices, m.spec.training.seed, m.spec.groupBy == "owner")
    pos = {s: i for i, s in enumerate(v.table.ids.tolist())}
    expected: dict[int, int] = {}
    for it in fixes:
        i = pos[it["id"]]
        if v.train[i]:
            expected[int(a.shard[i])] = min(expected.get(int(a.shard[i]), m.spec.slices), int(a.slice[i]))
    jobs1, jobs2 = version_jobs(store, m, 1), version_jobs(store, m, 2)
    assert {j["shard"]: j["fromSlice"] for j in jobs2} == expected
    assert len(expected) < m.spec.shards or any(s > 0 for s in expected.values()), "not a fraction of a retrain"
    full = sum(j.get("computeSeconds") or 0 for j in jobs1)
    part = sum(j.get("computeSeconds") or 0 for j in jobs2)

    # 6. the new Experiment, compared with the baseline
    assert sw("apply", "-f", "examples/annotation/03-experiment-after.yaml") == 0
    after = reg.require(Experiment, "after-fixes").status
    assert after.phase == "Succeeded" and after.modelVersion == 2
    assert after.accuracyDelta is not None and after.accuracyDelta > 0
    assert "against before-fixes (version 1)" in after.condition("Ready").message
    cmp = store.get_json(L.experiment_report("after-fixes"))["comparison"]
    assert (cmp["baseline"], cmp["baselineVersion"]) == ("before-fixes", 1)
    exact = {x: store.get_json(L.experiment_report(x))["accuracy"] for x in ("before-fixes", "after-fixes")}
    assert cmp["deltas"]["accuracy"] == pytest.approx(exact["after-fixes"] - exact["before-fixes"])
    assert after.accuracyDelta == round(cmp["deltas"]["accuracy"], 4)  # a status shows four decimals

    # the model's share, another way: version 1 tested on the corrected revision (spec.datasetRevision)
    reg.apply(experiment("v1-on-corrected", model="noisy-mlp", dataset="noisy-digits", modelVersion=1,
                         datasetRevision=1 + FIXES))
    assert sw("reconcile") == 0
    v1_fixed = reg.require(Experiment, "v1-on-corrected").status
    assert v1_fixed.phase == "Succeeded" and v1_fixed.accuracy >= before.accuracy
    v1_exact = store.get_json(L.experiment_report("v1-on-corrected"))["accuracy"]
    assert cmp["modelDelta"] == pytest.approx(exact["after-fixes"] - v1_exact)

    capsys.readouterr()
    assert sw("report", "after-fixes", "--out", str(tmp_path / "after.html")) == 0
    page_html = (tmp_path / "after.html").read_text()
    assert "Compared with before-fixes" in page_html and "data:image/png;base64," in page_html
    with capsys.disabled():
        print(f"\nannotation sequence: {right}/{FIXES} fixes were flipped labels; retrained "
              f"{sorted(expected.items())} (shard: from slice); trainer compute {part:.2f} s vs {full:.2f} s for "
              f"the first training ({part / full:.0%}); accuracy {before.accuracy:.4f} -> {after.accuracy:.4f} "
              f"({after.accuracyDelta:+.4f}; version 1 on the corrected labels {v1_fixed.accuracy:.4f}, so the "
              f"model's share is {cmp['modelDelta']:+.4f}: "
              f"{len(cmp['wrongToRight'])} wrong->right, {len(cmp['rightToWrong'])} right->wrong)")
