"""read_features: the rows `shardwise predict` reads, matched to the model's features by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardwise.errors import InvalidInput
from shardwise.predict import read_features

NAMES = ["a", "b", "c"]
ROWS = [[1.0, 2.0, 3.0], [4.5, -5.0, 6.25]]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_text(header: list[str], rows: list[dict[str, object]]) -> str:
    return ",".join(header) + "\n" + "".join(",".join(str(r[h]) for h in header) + "\n" for r in rows)


def by_name(row: list[float], **extra) -> dict[str, object]:
    return dict(zip(NAMES, row)) | extra


def refusal(path: Path, names: list[str] = NAMES, **kw) -> str:
    with pytest.raises(InvalidInput) as info:
        read_features(path, names, **kw)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    return msg


def test_csv_columns_in_another_order_give_the_same_rows(tmp_path):
    rows = [by_name(r) for r in ROWS]
    ids, natural = read_features(write(tmp_path, "n.csv", csv_text(NAMES, rows)), NAMES)
    ids2, shuffled = read_features(write(tmp_path, "s.csv", csv_text(["c", "a", "b"], rows)), NAMES)
    assert ids == ids2 == ["1", "2"]
    assert natural.dtype == np.float32 and natural.tolist() == ROWS
    assert shuffled.tolist() == ROWS  # matched by name, not by position


def test_csv_id_label_and_owner_columns_are_ignored_and_id_names_the_rows(tmp_path):
    rows = [by_name(r, id=f"r{i}", label="7", owner=f"subject-{i}") for i, r in enumerate(ROWS)]
    path = write(tmp_path, "x.csv", csv_text(["owner", "c", "id", "b", "label", "a"], rows))
    ids, x = read_features(path, NAMES)
    assert ids == ["r0", "r1"] and x.tolist() == ROWS


def test_the_datasets_own_id_column_names_the_rows(tmp_path):
    rows = [by_name(r, sample_id=f"s{i}", y="1") for i, r in enumerate(ROWS)]
    path = write(tmp_path, "x.csv", csv_text(["sample_id", "y", *NAMES], rows))
    ids, x = read_features(path, NAMES, ignored=("sample_id", "y", "owner"), id_column="sample_id")
    assert ids == ["s0", "s1"] and x.tolist() == ROWS


def test_a_csv_header_with_an_unknown_column_is_refused_naming_it(tmp_path):
    rows = [by_name(r, colour=1) for r in ROWS]
    msg = refusal(write(tmp_path, "x.csv", csv_text([*NAMES, "colour"], rows)))
    assert "line 1" in msg and "'colour'" in msg and "not features" in msg


def test_a_missing_feature_column_is_refused_naming_it(tmp_path):
    rows = [by_name(r) for r in ROWS]
    msg = refusal(write(tmp_path, "x.csv", csv_text(["a", "c"], rows)))
    assert "line 1" in msg and "'b'" in msg and "missing" in msg


def test_a_row_short_of_a_feature_is_refused_naming_the_line_and_field(tmp_path):
    msg = refusal(write(tmp_path, "x.csv", "a,b,c\n1,2,3\n4,5\n"))
    assert "line 3, field 'c': missing" in msg


def test_jsonl_rows_with_the_features_list_or_one_key_per_feature(tmp_path):
    lines = [json.dumps({"id": "r0", "features": ROWS[0]}),
             json.dumps({"c": ROWS[1][2], "label": "3", "owner": "subject-1", "a": ROWS[1][0], "b": ROWS[1][1]})]
    ids, x = read_features(write(tmp_path, "x.jsonl", "\n".join(lines) + "\n"), NAMES)
    assert ids == ["r0", "2"]  # without an id, a row is named by its line
    assert x.dtype == np.float32 and x.tolist() == ROWS


def test_jsonl_unknown_keys_are_refused_naming_them(tmp_path):
    msg = refusal(write(tmp_path, "x.jsonl", json.dumps(by_name(ROWS[0], colour=1, size=2)) + "\n"))
    assert "line 1" in msg and "'colour'" in msg and "'size'" in msg


def test_jsonl_missing_features_are_refused_naming_them(tmp_path):
    msg = refusal(write(tmp_path, "x.jsonl", json.dumps({"a": 1, "c": 3}) + "\n"))
    assert "line 1" in msg and "'b'" in msg and "missing" in msg


def test_jsonl_features_list_and_named_features_together_are_refused(tmp_path):
    # two values for 'a': neither may win silently
    msg = refusal(write(tmp_path, "x.jsonl", json.dumps({"features": ROWS[0], "a": 9}) + "\n"))
    assert "line 1" in msg and "not both" in msg and "'a'" in msg


@pytest.mark.parametrize("name, text, where", [
    ("x.csv", "a,b,c\n1,2,3\n\n1,inf,3\n", "line 4, field 'b'"),    # a blank line is still counted
    ("x.csv", "c,b,a\nnan,2,3\n", "line 2, field 'c'"),
    ("x.csv", "a,b,c\n1,2,1e39\n", "line 2, field 'c'"),           # beyond float32
    ("x.jsonl", '{"features": [1, 2, 3]}\n{"a": 1, "b": NaN, "c": 3}\n', "line 2, field 'b'"),
    ("x.jsonl", '{"features": [Infinity, 2, 3]}\n', "line 1, field 'a'"),
])
def test_non_finite_values_are_refused_naming_the_row_and_field(tmp_path, name, text, where):
    msg = refusal(write(tmp_path, name, text))
    assert where in msg and "not a finite float32 number" in msg
