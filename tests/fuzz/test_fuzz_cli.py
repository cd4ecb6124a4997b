"""Fuzzed numbers and paths on the command line: `--parallel`, `demo --shards/--slices`, `crds --out`.

The documented exits: 0 done, 1 an error naming the field (ShardwiseError, printed
as `error: ...`), 2 a usage error from argparse naming the option. Never a traceback.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from shardwise.api.crds import render_crds
from shardwise.cli import main
from tests.fuzz.common import HUGE_NUMBERS, TALLY, fuzz

_n = itertools.count()

NUMBERS = ["0", "-1", "1", "2", "1024", "1025", "1e3", "1.5", "", " ", "nan", "inf", "0x10", "٣", "+4", " 3 ", "1_0",
           *map(str, HUGE_NUMBERS)]
number_text = st.one_of(st.sampled_from(NUMBERS), st.integers(-5, 2000).map(str), st.text(max_size=6))


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse: usage errors
        rc = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def as_count(text: str, hi: int = 1024) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if 1 <= n <= hi else None


@fuzz(60)
@given(value=number_text)
@example(value="0")  # started no trainer and waited for nothing: a model stayed Training for ever
def _parallel(tmp_path_factory, capsys, value: str) -> None:
    store = tmp_path_factory.getbasetemp() / f"p{next(_n)}"
    rc, out, err = run(capsys, ["--store", str(store), f"--parallel={value}", "reconcile"])
    assert "Traceback" not in out + err
    if rc == 0:
        TALLY.seen("cli: --parallel", accepted=True)
        assert as_count(value) is not None, value
        return
    TALLY.seen("cli: --parallel", accepted=False)
    assert rc == 2 and "argument --parallel" in err and as_count(value) is None, (rc, err)


def test_parallel_is_a_positive_count(tmp_path_factory, capsys, monkeypatch):
    monkeypatch.setenv("SHARDWISE_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    _parallel(tmp_path_factory, capsys)
    TALLY.require("cli: --parallel")


# Only refusals are tried: an accepted demo trains a model for a minute.
@fuzz(40)
@given(option=st.sampled_from(["--shards", "--slices"]), value=number_text.filter(lambda v: as_count(v) is None))
@example(option="--shards", value="0")
def _demo_counts(tmp_path_factory, capsys, option: str, value: str) -> None:
    store = tmp_path_factory.getbasetemp() / f"d{next(_n)}"
    rc, out, err = run(capsys, ["--store", str(store), "demo", f"{option}={value}"])
    TALLY.seen("cli: demo --shards/--slices", accepted=False)
    assert "Traceback" not in out + err
    assert rc == 2 and f"argument {option}" in err and not store.exists(), (rc, err)


def test_demo_refuses_bad_counts_before_training(tmp_path_factory, capsys):
    _demo_counts(tmp_path_factory, capsys)
    TALLY.require("cli: demo --shards/--slices", accepted=False)


OUT_PATHS = ["crds", "a/b/c", "ünï", "x y", "/proc/nope", "/dev/null/x", "/dev/null", "FILE", "FILE/sub", "\t", "-"]


@fuzz(20)
@given(out=st.one_of(st.sampled_from(OUT_PATHS), st.text(st.characters(blacklist_characters="\x00/.",
                                                                         blacklist_categories=("Cs",)), max_size=8)))
@example(out="/proc/nope")
def _crds_out(tmp_path_factory, capsys, out: str) -> None:
    base = tmp_path_factory.getbasetemp() / f"c{next(_n)}"
    base.mkdir()
    (base / "FILE").write_text("a file, not a folder")
    target = out if out.startswith("/") else str(base / out) if out else ""
    rc, stdout, err = run(capsys, ["crds", f"--out={target}"])
    assert "Traceback" not in stdout + err
    if rc == 0:
        TALLY.seen("cli: crds --out", accepted=True)
        # one printed path per CRD (a path may itself hold a line break, so the lines are not counted)
        assert all((Path(target) / f).is_file() and f"{Path(target) / f}\n" in stdout for f in render_crds()), stdout
        return
    TALLY.seen("cli: crds --out", accepted=False)
    assert rc == 1 and err.startswith(f"error: --out {target}"), (rc, err)


def test_crds_out_is_written_or_named(tmp_path_factory, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # an empty --out means the working folder
    _crds_out(tmp_path_factory, capsys)
    TALLY.require("cli: crds --out")
