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
