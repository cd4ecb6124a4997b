"""load_source: every format, every refusal, and a property test over random CSVs."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shardwise.api.dataset import DatasetSource
from shardwise.data import sources
from shardwise.data.sources import load_source
from shardwise.data.table import SampleTable
from shardwise.errors import InvalidInput, NotFound
from shardwise.store.base import Store, check_key


def src(**kw) -> DatasetSource:
    return DatasetSource(**kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def refusal(uri, **kw) -> str:
    with pytest.raises(InvalidInput) as info:
        load_source(src(uri=str(uri), **kw))
    return str(info.value)


def names_place(msg: str, file: str, line: int, field: str | None) -> None:
    assert file in msg, msg
    assert re.search(rf"\bline {line}\b", msg), msg
    if field is not None:
        assert f"field {field!r}" in msg, msg


# ---------------------------------------------------------------------------
# builtin digits
# ---------------------------------------------------------------------------


def test_digits_loads_without_owners():
    t = load_source(src(builtin="digits"))
    assert isinstance(t, SampleTable)
    assert t.features.shape == (1797, 1, 8, 8) and t.is_image and t.features.dtype == np.float32
    assert 0.0 <= t.features.min() and t.features.max() == 1.0
    assert t.class_names == tuple("0123456789")
    assert t.labels.dtype == np.int64 and set(t.labels.tolist()) == set(range(10))
    assert t.ids[0] == "digits-00000" and t.ids[-1] == "digits-01796"
    assert (t.owners == "").all()


def test_digits_owners_are_consecutive_runs_and_deterministic():
    t = load_source(src(builtin="digits", ownersPerSample=7))
    assert t.owners[0] == t.owners[6] == "subject-0000"
    assert t.owners[7] == "subject-0001"
    assert len(set(t.owners.tolist())) == math.ceil(1797 / 7)
    again = load_source(src(builtin="digits", ownersPerSample=7))
    assert (again.owners == t.owners).all() and (again.features == t.features).all()


def test_owners_per_sample_is_refused_for_files(tmp_path):
    p = write(tmp_path / "data.csv", "id,label,x\na,1,2\n")
    assert "ownersPerSample" in refusal(p, ownersPerSample=3)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def test_csv_round_trip_with_int_labels_sorted_numerically(tmp_path):
    p = write(tmp_path / "data.csv", "id,f1,label,f2\na,1.5,10,-2\nb,0,2,3e-3\n c ,7,2,1\n")
    before = sorted(tmp_path.iterdir())
    t = load_source(src(uri=str(p)))
    assert t.ids.tolist() == ["a", "b", "c"]
    assert t.class_names == ("2", "10")
    assert t.labels.tolist() == [1, 0, 0]
    np.testing.assert_array_equal(t.features, np.array([[1.5, -2], [0, 3e-3], [7, 1]], dtype=np.float32))
    assert t.features.dtype == np.float32
    assert (t.owners == "").all()
    assert sorted(tmp_path.iterdir()) == before  # reads only


def test_csv_rows_spanning_several_chunks_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sources._Matrix, "CHUNK_BYTES", 3 * 2 * 4)  # three rows of two float32 per chunk
    p = write(tmp_path / "data.csv", "id,label,a,b\n" + "".join(f"r{i},{i % 3},{i},{-i}\n" for i in range(10)))
    t = load_source(src(uri=str(p)))
    assert t.features.tolist() == [[i, -i] for i in range(10)]
    assert t.ids.tolist() == [f"r{i}" for i in range(10)]


def test_csv_string_labels_owner_column_and_custom_names(tmp_path):
    p = write(
        tmp_path / "people.csv",
        'key,who,kind,x,y\nk1,alice,dog,1,2\nk2,,cat,3,4\n"k,3",bob,"big dog",5,6\n',
    )
    t = load_source(src(uri=str(p), idColumn="key", labelColumn="kind", ownerColumn="who"))
    assert t.ids.tolist() == ["k1", "k2", "k,3"]
    assert t.class_names == ("big dog", "cat", "dog")
    assert [t.class_names[c] for c in t.labels] == ["dog", "cat", "big dog"]
    assert t.owners.tolist() == ["alice", "", "bob"]
    assert t.features.shape == (3, 2)


def test_csv_mixed_labels_sort_as_text_and_bom_crlf_blank_lines(tmp_path):
    p = tmp_path / "data.csv"
    p.write_bytes(b"\xef\xbb\xbfid,label,x\r\na,10,1\r\n\r\nb,2,2\r\nc,x,3\r\n,,\r\n")
    t = load_source(src(uri=str(p)))
    assert t.ids.tolist() == ["a", "b", "c"]
    assert t.class_names == ("10", "2", "x")


def test_format_overrides_extension_and_file_uri(tmp_path):
    p = write(tmp_path / "data.txt", "id,label,x\na,1,2\n")
    assert refusal(p).count(str(p)) >= 1
    t = load_source(src(uri=f"file://{p}", format="csv"))
    assert t.ids.tolist() == ["a"]


# ---------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------


def jsonl(path: Path, *objs) -> Path:
    return write(path, "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


def test_jsonl_round_trip_int_and_string_labels_and_owners(tmp_path):
    p = jsonl(
        tmp_path / "data.jsonl",
        {"id": "a", "label": 3, "features": [1, 2.5], "owner": "ann"},
        "",
        {"id": 7, "label": "3", "features": [0, -1], "owner": None},
        {"id": "c", "label": 12, "features": [1e-3, 4], "extra": "ignored"},
    )
    t = load_source(src(uri=str(p)))
    assert t.ids.tolist() == ["a", "7", "c"]
    assert t.class_names == ("3", "12")
    assert t.labels.tolist() == [0, 0, 1]
    assert t.owners.tolist() == ["ann", "", ""]
    np.testing.assert_array_equal(t.features, np.array([[1, 2.5], [0, -1], [1e-3, 4]], dtype=np.float32))


def test_ndjson_custom_keys(tmp_path):
    p = jsonl(tmp_path / "d.ndjson", {"k": "a", "y": "cat", "v": [1]}, {"k": "b", "y": "ant", "v": [2]})
    t = load_source(src(uri=str(p), idColumn="k", labelColumn="y", featuresColumn="v"))
    assert t.class_names == ("ant", "cat") and t.labels.tolist() == [1, 0]


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def make_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), "RGB").save(folder / "a.png")
    Image.new("L", (5, 5), 0).save(folder / "b.png")
    Image.new("RGB", (16, 16), (128, 128, 128)).save(folder / "c.jpg", quality=95)
    (folder / "sub").mkdir(exist_ok=True)
    Image.fromarray(np.full((6, 6), 30000, dtype=np.uint16)).save(folder / "sub" / "d.png")  # 16-bit
    Image.new("L", (4, 4), 255).save(folder / "not-listed.png")


def test_image_folder(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder)
    write(folder / "labels.csv", "file,label,owner\na.png,cat,o1\nb.png,dog,\nc.jpg,cat,o2\nsub/d.png,dog,o1\n")
    t = load_source(src(uri=str(folder), imageSize=8))
    assert t.ids.tolist() == ["a", "b", "c", "sub/d"]
    assert t.features.shape == (4, 1, 8, 8) and t.features.dtype == np.float32
    assert t.class_names == ("cat", "dog") and t.labels.tolist() == [0, 1, 0, 1]
    assert t.owners.tolist() == ["o1", "", "o2", "o1"]
    expected_a = np.asarray(
        Image.open(folder / "a.png").convert("L").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32
    ) / 255
    np.testing.assert_allclose(t.features[0, 0], expected_a, atol=1e-6)
    assert (t.features[1] == 0).all()
    np.testing.assert_allclose(t.features[2], 128 / 255, atol=0.02)
    np.testing.assert_allclose(t.features[3], 30000 / 65535, atol=1e-6)  # 16 bits kept, not clipped
    assert 0.0 <= t.features.min() and t.features.max() <= 1.0


def test_image_folder_with_id_column_and_other_labels_file(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder)
    write(folder / "meta.csv", "id,file,label\nx1,a.png,1\nx2,a.png,2\n")
    t = load_source(src(uri=str(folder), labelsFile="meta.csv", imageSize=4, format="images"))
    assert t.ids.tolist() == ["x1", "x2"] and t.features.shape == (2, 1, 4, 4)
    np.testing.assert_array_equal(t.features[0], t.features[1])


# ---------------------------------------------------------------------------
# s3:// through a Store
# ---------------------------------------------------------------------------


class MemoryStore(Store):
    """Stands in for S3Store here: only the Store interface matters to load_source.
    S3Store's real protocol is tested elsewhere, against SeaweedFS."""

    def __init__(self, uri: str):
        self.uri = uri
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key, data, *, sha256=None):
        self.objects[check_key(key)] = bytes(data)

    def get_bytes(self, key):
        try:
            return self.objects[check_key(key)]
        except KeyError:
            raise NotFound(f"no object {key!r} in {self.uri}") from None

    def stored_sha256(self, key):
        return None

    def exists(self, key):
        return key in self.objects

    def list(self, prefix=""):
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key):
        self.objects.pop(key, None)


@pytest.fixture
def s3():
    store = MemoryStore("s3://bucket")
    opened: list[str] = []

    def opener(uri: str) -> Store:
        opened.append(uri)
        return store

    return store, opener, opened


def test_s3_csv_and_jsonl(s3):
    store, opener, opened = s3
    store.put_bytes("in/data.csv", b"id,label,x\na,1,0.5\nb,0,1\n")
    store.put_bytes("in/data.jsonl", b'{"id":"a","label":"z","features":[1,2]}\n')
    t = load_source(src(uri="s3://bucket/in/data.csv"), store_opener=opener)
    assert t.ids.tolist() == ["a", "b"] and t.features.tolist() == [[0.5], [1.0]]
    t = load_source(src(uri="s3://bucket/in/data.jsonl"), store_opener=opener)
    assert t.class_names == ("z",)
    assert opened == ["s3://bucket", "s3://bucket"]
    before = dict(store.objects)
    with pytest.raises(NotFound, match="s3://bucket/in/nope.csv"):
        load_source(src(uri="s3://bucket/in/nope.csv"), store_opener=opener)
    assert store.objects == before  # reads only


def test_s3_image_prefix_with_and_without_trailing_slash(s3, tmp_path):
    store, opener, _ = s3
    make_images(tmp_path / "imgs")
    for name in ("a.png", "c.jpg"):
        store.put_bytes(f"pics/{name}", (tmp_path / "imgs" / name).read_bytes())
    store.put_bytes("pics/labels.csv", b"file,label\na.png,1\nc.jpg,2\n")
    for uri in ("s3://bucket/pics/", "s3://bucket/pics"):
        t = load_source(src(uri=uri, imageSize=6), store_opener=opener)
        assert t.ids.tolist() == ["a", "c"] and t.features.shape == (2, 1, 6, 6)
    store.put_bytes("pics/labels.csv", b"file,label\na.png,1\ngone.png,2\n")
    msg = str(pytest.raises(InvalidInput, load_source, src(uri="s3://bucket/pics/"), store_opener=opener).value)
    names_place(msg, "s3://bucket/pics/labels.csv", 3, "file")
    assert "gone.png" in msg


# ---------------------------------------------------------------------------
# refusals: every message names the file, the line and the field
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, field, words",
    [
        ("id,x\na,1\n", 1, "label", "missing from the header"),
        ("label,x\n1,1\n", 1, "id", "missing from the header"),
        ("id,label,x\na,1,2\n ,1,2\n", 3, "id", "empty value"),
        ("id,label,x\na,1,2\nb,1,2\nc,1,3\nb,0,0\n", 5, "id", "first on line 3"),
        ("id,label,x\na,1,2\nb,,2\n", 3, "label", "empty value"),
        ("id,label,x,f3\na,1,2,3\nb,1,2,abc\n", 3, "f3", "'abc' is not a number"),
        ("id,label,x,f3\na,1,2,\n", 2, "f3", "empty value"),
        ("id,label,x,f3\na,1,2\n", 2, "f3", "missing"),
        ("id,label,x,f3\na,1,2,3,4\n", 2, None, "extra values"),
        ("id,label,x\na,1,nan\n", 2, "x", "not a finite number"),
        ("id,label,x\na,1,-inf\n", 2, "x", "not a finite number"),
        ("id,label,x\na,1,1e39\n", 2, "x", "float32 range"),
        ('id,label,x\n"a\nb",1,2\nc,1,2,3\n', 4, None, "extra values"),  # a quoted newline spans lines 2-3
        ('id,label,x\na,1,"2\n', 2, None, "malformed CSV"),
        ("id,label,x\na,1,2\nb,1,2\nc,1,0x10\n", 4, "x", "'0x10' is not a number"),
        ("id,label,label,x\n", 1, "label", "twice"),
        ("id,label,\n", 1, None, "no name"),
        ("id,label\na,1\n", 1, None, "no feature columns"),
        ("id,label,x\na\x00b,1,2\n", 2, "id", "NUL"),
    ],
)
def test_csv_refusals(tmp_path, text, line, field, words):
    p = write(tmp_path / "data.csv", text)
    msg = refusal(p)
    names_place(msg, "data.csv", line, field)
    assert words in msg, msg


def test_duplicate_id_names_both_lines(tmp_path):
    msg = refusal(write(tmp_path / "data.csv", "id,label,x\nq,1,2\nr,1,2\nq,0,0\n"))
    assert "line 4" in msg and "line 2" in msg and "'q'" in msg


def test_invalid_utf8_names_its_line(tmp_path):
    p = tmp_path / "data.csv"
    p.write_bytes(b"id,label,x\na,1,2\nb,\xff,2\n")
    names_place(refusal(p), "data.csv", 3, None)


@pytest.mark.parametrize(
    "text, where",
    [("", "empty"), ("\n\n", "empty"), ("id,label,x\n", "no samples"), ("id,label,x\n , ,\n", "no samples")],
)
def test_empty_csv(tmp_path, text, where):
    assert where in refusal(write(tmp_path / "data.csv", text))


ROW_A = '{"id":"a","label":1,"features":[1,2]}'


@pytest.mark.parametrize(
    "lines, line, field, words",
    [
        ([ROW_A, '{"id":"b","label":1,"features":[1]}'], 2, "features", "line 1 has 2"),
        ([ROW_A, '{"id":"b","label":1,"features":[1,2,3]}'], 2, "features", "3 value(s)"),
        (['{"id":"a","label":1,"features":[1,2]}', '{"id":"b", "label":1'], 2, None, "invalid JSON"),
        (['{"id":"a","label":1,"features":[1,2]}', "", "[1,2]"], 3, None, "expected a JSON object, found an array"),
        (['"just text"'], 1, None, "found a string"),
        (['{"id":"a","label":1,"features":[1,NaN]}'], 1, "features[1]", "not a finite number"),
        (['{"id":"a","label":1,"features":[Infinity]}'], 1, "features[0]", "not a finite number"),
        (['{"id":"a","label":1,"features":[1e39]}'], 1, "features[0]", "float32 range"),
        (['{"id":"a","label":1,"features":[1, "2"]}'], 1, "features[1]", "'2' is not a number"),
        (['{"id":"a","label":1,"features":[true]}'], 1, "features[0]", "true is not a number"),
        (['{"id":"a","label":1,"features":[[1]]}'], 1, "features[0]", "not a number"),
        (['{"id":"a","label":1,"features":[]}'], 1, "features", "empty list"),
        (['{"id":"a","label":1,"features":"1,2"}'], 1, "features", "list of numbers"),
        (['{"id":"a","label":1}'], 1, "features", "missing"),
        (['{"label":1,"features":[1]}'], 1, "id", "missing"),
        (['{"id":"","label":1,"features":[1]}'], 1, "id", "empty value"),
        (['{"id":"a","label":null,"features":[1]}'], 1, "label", "null"),
        (['{"id":"a","label":" ","features":[1]}'], 1, "label", "empty value"),
        (['{"id":"a","label":2.5,"features":[1]}'], 1, "label", "not a string or an integer"),
        (['{"id":"a","label":1,"features":[1]}', '{"id":"a","label":1,"features":[1]}'], 2, "id", "first on line 1"),
        (['{"id":"a","label":1,"features":[1e999999]}'], 1, "features[0]", "not a finite number"),
        (["[" * 100_000], 1, None, "invalid JSON"),
    ],
)
def test_jsonl_refusals(tmp_path, lines, line, field, words):
    msg = refusal(jsonl(tmp_path / "data.jsonl", *lines))
    names_place(msg, "data.jsonl", line, field)
    assert words in msg, msg


def test_empty_jsonl(tmp_path):
    assert "no samples" in refusal(write(tmp_path / "data.jsonl", "\n  \n"))


def test_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_ROWS", 3)
    monkeypatch.setattr(sources, "MAX_FEATURES", 2)
    ok = "id,label,a,b\n" + "".join(f"r{i},1,1,2\n" for i in range(3))
    assert len(load_source(src(uri=str(write(tmp_path / "ok.csv", ok))))) == 3
    msg = refusal(write(tmp_path / "rows.csv", ok + "r9,1,1,2\n"))
    names_place(msg, "rows.csv", 5, None)
    assert "more than 3 rows" in msg
    msg = refusal(write(tmp_path / "wide.csv", "id,label,a,b,c\nr,1,1,2,3\n"))
    names_place(msg, "wide.csv", 1, "c")
    assert "at most 2" in msg
    msg = refusal(jsonl(tmp_path / "wide.jsonl", {"id": "a", "label": 1, "features": [1, 2, 3]}))
    names_place(msg, "wide.jsonl", 1, "features")


def test_image_refusals(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (4, 4)).save(folder / "x.gif")
    cases = [
        ("file,label\na.png,1\nbroken.png,2\n", 3, "file", "cannot be decoded"),
        ("file,label\na.png,1\n\nmissing.png,2\n", 4, "file", "not found"),
        ("file,label\nx.gif,2\n", 2, "file", "only PNG and JPEG"),
        ("file,label\n../a.png,2\n", 2, "file", "relative path"),
        ("file,label\nsub,2\n", 2, "file", "folder"),
        ("file,label\na.png,\n", 2, "label", "empty value"),
        ("file,label\na.png,1\nb.png,1\na.png,2\n", 4, "id", "first on line 2"),
        ("label,owner\n1,x\n", 1, "file", "missing from the header"),
        ("file,label\na.png,1,extra\n", 2, None, "extra values"),
    ]
    for text, line, field, words in cases:
        write(folder / "labels.csv", text)
        msg = refusal(folder)
        names_place(msg, "labels.csv", line, field)
        assert words in msg, msg
    write(folder / "labels.csv", "file,label\n")
    assert "no samples" in refusal(folder)
    with pytest.raises(NotFound, match="other.csv"):
        load_source(src(uri=str(folder), labelsFile="other.csv"))
    assert "labelsFile" in refusal(folder, labelsFile="../labels.csv")


def test_uri_refusals(tmp_path):
    p = write(tmp_path / "data.parquet", "x")
    assert str(p) in refusal(p)
    with pytest.raises(NotFound, match="nowhere.csv"):
        load_source(src(uri=str(tmp_path / "nowhere.csv")))
    assert "ftp" in refusal("ftp://host/data.csv")
    assert "bucket" in refusal("s3:///key.csv")
    assert "needs a folder" in refusal(write(tmp_path / "d.csv", "id,label,x\n"), format="images")
    assert "needs a file" in refusal(tmp_path, format="csv")
    assert "empty" in refusal("  ")


# ---------------------------------------------------------------------------
# property: a random small CSV loads exactly, or is refused naming its first bad line
# ---------------------------------------------------------------------------

ID_TEXT = st.text(alphabet="ab1 ,\"\n", min_size=0, max_size=4)
LABELS = st.sampled_from(["0", "1", "2", "10", " 3 ", "cat", "dog"])
NUMBER = st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr)
BAD_CELLS = ["", "  ", "abc", "nan", "-inf", "1e39", "1,5", "0x10", "1..2"]
FEATURES = ["f0", "f1", "f2"]
_counter = itertools.count()


@st.composite
def csv_cases(draw):
    n = draw(st.integers(1, 6))
    with_owner = draw(st.booleans())
    cols = ["id", "label", *(["owner"] if with_owner else []), *FEATURES]
    cols = draw(st.permutations(cols))
    rows = []
    for _ in range(n):
        row = {"id": draw(ID_TEXT), "label": draw(LABELS), "owner": draw(st.sampled_from(["", "p1", "p2"]))}
        row.update({f: draw(NUMBER) for f in FEATURES})
        if draw(st.integers(0, 9)) == 0:  # sometimes corrupt one cell
            col = draw(st.sampled_from(cols))
            row[col] = draw(st.sampled_from(BAD_CELLS))
        rows.append(row)
    return cols, rows


def expected_outcome(cols, rows, starts):
    """(None, table rows) if the file is good, else (first bad line, None)."""
    seen, good = set(), []
    for row, start in zip(rows, starts):
        cells = [row[c] for c in cols]
        if all(not c.strip() for c in cells):
            continue  # blank rows are skipped
        sid, label = row["id"].strip(), row["label"].strip()
        if not sid or sid in seen or not label:
            return start, None
        seen.add(sid)
        values = []
        for f in [c for c in cols if c in FEATURES]:  # features keep the header's order
            try:
                with np.errstate(over="ignore"):
                    v = np.float32(float(row[f]))
            except ValueError:
                return start, None
            if not np.isfinite(v):
                return start, None
            values.append(v)
        owner = row["owner"].strip() if "owner" in cols else ""
        good.append((sid, label, owner, values))
    return None, good


@settings(max_examples=150, deadline=None)
@given(case=csv_cases())
def test_random_csv_loads_exactly_or_names_the_bad_line(tmp_path_factory, case):
    cols, rows = case
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    starts = []
    for row in rows:
        starts.append(buf.getvalue().count("\n") + 1)
        writer.writerow([row[c] for c in cols])
    path = tmp_path_factory.getbasetemp() / f"random-{next(_counter)}.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    bad_line, good = expected_outcome(cols, rows, starts)
    try:
        with np.errstate(all="raise"):  # the loader must not depend on numpy's global error state
            t = load_source(src(uri=str(path)))
    except InvalidInput as e:
        msg = str(e)
        assert path.name in msg, msg
        if bad_line is None:
            assert not good and "no samples" in msg, msg
        else:
            m = re.search(r"\bline (\d+)\b", msg)
            assert m and int(m.group(1)) == bad_line, (msg, bad_line)
        return
    finally:
        path.unlink()
    assert bad_line is None and good, "a bad file was accepted"
    assert t.ids.tolist() == [g[0] for g in good]
    assert [t.class_names[c] for c in t.labels] == [g[1] for g in good]
    assert t.owners.tolist() == [g[2] for g in good]
    np.testing.assert_array_equal(t.features, np.array([g[3] for g in good], dtype=np.float32))


def test_ids_and_owner_keys_longer_than_a_forget_request_can_name_are_refused(tmp_path):
    ok = "i" * 256
    p = write(tmp_path / "ok.csv", f"id,label,owner,x\n{ok},a,{'o' * 256},1\nb,b,,2\n")
    assert load_source(src(uri=str(p))).ids.tolist() == [ok, "b"]
    long_id = write(tmp_path / "id.csv", f"id,label,x\na,a,1\n{'i' * 257},b,2\n")
    assert refusal(long_id) == f"{long_id} line 3, field 'id': the id is 257 characters long; at most 256 are allowed"
    long_owner = write(tmp_path / "owner.jsonl", json.dumps({"id": "a", "label": "x", "owner": "o" * 300,
                                                             "features": [1]}) + "\n")
    assert "field 'owner': the owner key is 300 characters long; at most 256" in refusal(long_owner)
