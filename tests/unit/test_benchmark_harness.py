"""A smoke test of the benchmark harness (figures come from `python benchmarks/run.py`, not from tests)."""

import numpy as np

from benchmarks import run


def test_the_brain_benchmark_runs_and_reports(tmp_path, monkeypatch):
    rows = run.b6(quick=True)
    assert [r["samples"] for r in rows] == [10**5, 10**6]
    assert all(r["peak_memory_mib"] > 0 and r["assign_seconds"] >= 0 and r["words_seconds"] > 0 for r in rows)
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    (tmp_path / "brain.json").write_text(__import__("json").dumps({"machine": {"cpus": 2, "torch": "x", "cuda": False,
                                                                             "commit": "c", "date": "d"},
                                                                   "rows": rows}))
    md = "\n".join(run.render())
    assert "B6 the brain at scale" in md and "| 1000000 |" in md


def test_label_fixes_oracle_is_the_clean_model():
    """B8's oracle (every flipped label restored, then the incremental retrain) scores exactly what
    training from scratch on the clean labels scores, and each fix count is honest about its hits."""
    from benchmarks import label_fixes

    rows = label_fixes.run(quick=True, log=lambda m: None)
    oracle = [r for r in rows if r["fixes"].startswith("oracle")]
    assert len(oracle) == 1 and oracle[0]["accuracy"] == oracle[0]["clean_accuracy"]
    assert oracle[0]["right"] == oracle[0]["fixed"] == oracle[0]["flipped"]
    tops = [r for r in rows if r["fixes"].startswith("top")]
    assert [r["fixed"] for r in tops] == [round(s * oracle[0]["flipped"]) for s in label_fixes.SHARES]
    assert all(0 < r["right"] <= r["fixed"] for r in tops)


def test_the_balanced_baseline_is_the_pre_change_placement_and_only_inside_its_block():
    """B1's baseline: balanced_placement() swaps DatasetView.assignment for the old balanced one
    (shard sizes differ by at most 1) and puts the hash placement back afterwards."""
    from benchmarks.harness import World, balanced_placement, synthetic

    world = World.make(synthetic(2_000, d=4))
    try:
        view = world.datasets.view("d")
        hashed = view.assignment(8, 4, 0, False)
        with balanced_placement():
            bal = view.assignment(8, 4, 0, False)
        sizes = np.bincount(bal.shard[bal.shard >= 0], minlength=8)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == view.train.sum()
        assert (bal.shard < 0).sum() == (~view.train).sum()
        again = view.assignment(8, 4, 0, False)
        assert (again.shard == hashed.shard).all() and (again.slice == hashed.slice).all()
        assert not ((bal.shard == hashed.shard).all())
    finally:
        world.tmp.cleanup()
