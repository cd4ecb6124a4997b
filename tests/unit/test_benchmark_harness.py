"""A smoke test of the benchmark harness (figures come from `python benchmarks/run.py`, not from tests)."""

from benchmarks import run


def test_the_brain_benchmark_runs_and_reports(tmp_path, monkeypatch):
    rows = run.b6(quick=True)
    assert [r["samples"] for r in rows] == [10**5, 10**6]
    assert all(r["peak_memory_mib"] > 0 and r["assign_seconds"] >= 0 for r in rows)
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    (tmp_path / "brain.json").write_text(__import__("json").dumps({"machine": {"cpus": 2, "torch": "x", "cuda": False,
                                                                             "commit": "c", "date": "d"}, "rows": rows}))
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
