"""Fuzzed dataset sources: CSV and JSONL rows, image folders with bad files, source URIs.

`load_source` either returns the whole table or raises InvalidInput (NotFound for a
source that is not there) whose message names the file, the line and the field;
one bad cell injected into an otherwise good file must be reported at exactly its
line and field. An ingest that fails writes nothing to the store.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from shardwise.api import Dataset
from shardwise.api.dataset import DatasetSource
from shardwise.control import StoreControl
from shardwise.data.sources import load_source
from shardwise.data.table import SampleTable
from shardwise.errors import InvalidInput, ShardwiseError
from shardwise.local.registry import Registry
from shardwise.store.base import Store
from shardwise.store.local import LocalStore
from tests.fuzz.common import NASTY_STRINGS, TALLY, USER_ERRORS, fuzz, printable, snapshot

_n = itertools.count()

# Cell text with no line break (so a row is one line) and no NUL (a fault of its own), never blank once stripped.
cell = st.text(st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != "")
feature = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def place(msg: str, name: str, line: int, field: str | None) -> None:
    """The message names the file, exactly this line, and the field when there is one."""
    assert name in msg and printable(msg), msg
    m = re.search(r"\bline (\d+)\b", msg)
    assert m and int(m.group(1)) == line, f"expected line {line}: {msg}"
    if field is not None:
        assert f"field {field!r}" in msg, f"expected field {field!r}: {msg}"


@st.composite
def table(draw) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    width = draw(st.integers(1, 3))
    return {
        "ids": draw(st.lists(cell, min_size=n, max_size=n, unique=True)),
        "labels": draw(st.lists(st.one_of(st.sampled_from(["0", "1", "7", "cat"]), cell), min_size=n, max_size=n)),
        "owners": draw(st.one_of(st.none(), st.lists(st.one_of(st.just(""), cell), min_size=n, max_size=n))),
        "features": draw(st.lists(st.lists(feature, min_size=width, max_size=width), min_size=n, max_size=n)),
    }


def check_accepted(t: SampleTable, tab: dict[str, Any]) -> None:
    assert t.ids.tolist() == tab["ids"]
    assert [t.class_names[c] for c in t.labels] == tab["labels"]
    assert t.owners.tolist() == (tab["owners"] or [""] * len(tab["ids"]))
    np.testing.assert_array_equal(t.features, np.array(tab["features"], dtype=np.float32))


# ---------------------------------------------------------------------------
# CSV: one fault in a good file is found at its line and field
# ---------------------------------------------------------------------------

CSV_FAULTS = ["none", "empty_id", "dup_id", "empty_label", "nul", "long_owner", "bad_number", "short_row",
              "long_row", "bad_utf8", "bad_quote"]
BAD_NUMBERS = ["nan", "NaN", "inf", "-Infinity", "1e39", "-3.5e38", "abc", "", " ", "1,5", "0x10", "1e", "--1",
               "1" * 5000]


@st.composite
def csv_case(draw) -> tuple[bytes, dict[str, Any], tuple[int, str | None] | None]:
    """File bytes, the table it should load as, and the (line, field) a fault must be reported at."""
    tab = draw(table())
    width = len(tab["features"][0])
    feat_cols = [f"f{j}" for j in range(width)]
    cols = ["id", "label", *(["owner"] if tab["owners"] is not None else []), *feat_cols]
    cols = draw(st.permutations(cols))
    order = [int(c[1:]) for c in cols if c in feat_cols]  # features keep the header's order
    tab["features"] = [[r[j] for j in order] for r in tab["features"]]
    feat_cols = [f"f{j}" for j in order]
    rows = []
    for i in range(len(tab["ids"])):
        v = {"id": tab["ids"][i], "label": tab["labels"][i],
             **{f: repr(x) for f, x in zip(feat_cols, tab["features"][i])}}
        if tab["owners"] is not None:
            v["owner"] = tab["owners"][i]
        rows.append([v[c] for c in cols])
    fault = draw(st.sampled_from(CSV_FAULTS))
    if fault == "long_owner" and tab["owners"] is None:
        fault = "none"
    if fault == "dup_id" and len(rows) < 2:
        fault = "none"
    at = draw(st.integers(1 if fault == "dup_id" else 0, len(rows) - 1)) if fault != "none" else 0
    if fault == "bad_quote":
        at = len(rows) - 1  # an open quote runs to the end of the file: nothing after it may close it
    where: tuple[int, str | None] | None = (at + 2, None)  # the header is line 1
    row = rows[at]
    if fault == "none":
        where = None
    elif fault == "empty_id":
        row[cols.index("id")] = draw(st.sampled_from(["", "  ", "\t"]))
        where = (at + 2, "id")
    elif fault == "dup_id":
        row[cols.index("id")] = rows[draw(st.integers(0, at - 1))][cols.index("id")]
        where = (at + 2, "id")
    elif fault == "empty_label":
        row[cols.index("label")] = ""
        where = (at + 2, "label")
    elif fault == "nul":
        field = draw(st.sampled_from([c for c in cols if c in ("id", "label", "owner")]))
        row[cols.index(field)] = "a\x00b"
        where = (at + 2, field)
    elif fault == "long_owner":
        row[cols.index("owner")] = "o" * 257  # longer than a ForgetRequest can name
        where = (at + 2, "owner")
    elif fault == "bad_number":
        field = draw(st.sampled_from(feat_cols))
        row[cols.index(field)] = draw(st.sampled_from(BAD_NUMBERS))
        where = (at + 2, field)
    elif fault == "short_row":
        k = draw(st.integers(0, len(cols) - 1))
        del row[k:]
        where = (at + 2, cols[k])
        if all(not c.strip() for c in row):  # a row of blank cells is skipped like a blank line
            where = None if len(rows) > 1 else (1, None)
    elif fault == "long_row":
        row.append(draw(cell))
    lines = []
    for i, r in enumerate(rows):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(r)
        text = buf.getvalue().encode()
        if i == at and fault == "bad_utf8":
            text = b"\xff\xfe" + text
        if i == at and fault == "bad_quote":
            text = b'"unterminated,' + text
        lines.append(text)
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(cols)
    data = head.getvalue().encode() + b"".join(lines)
    if fault == "short_row" and where is None:  # the blank row is skipped: it loads without that row
        for key in ("ids", "labels", "features") + (("owners",) if tab["owners"] is not None else ()):
            del tab[key][at]
    return data, tab, where


@fuzz(200)
@given(case=csv_case())
@example(case=(b"id,label,f\n", {}, (1, None)))  # only a header: no samples
def _csv(tmp_path_factory, case) -> None:
    data, tab, where = case
    path = tmp_path_factory.getbasetemp() / f"c{next(_n)}.csv"
    path.write_bytes(data)
    try:
        t = load_source(DatasetSource(uri=str(path)))
    except InvalidInput as e:
        TALLY.seen("sources: CSV rows", accepted=False)
        assert where is not None, f"a good file was refused: {e}"
        if not tab or where == (1, None) and "no samples" in str(e):
            assert "no samples" in str(e) and path.name in str(e), e
        else:
            place(str(e), path.name, *where)
        return
    finally:
        path.unlink()
    TALLY.seen("sources: CSV rows", accepted=True)
    assert where is None, f"a bad file was accepted (fault expected at line {where})"
    check_accepted(t, tab)


def test_csv_rows_load_exactly_or_name_line_and_field(tmp_path_factory):
    _csv(tmp_path_factory)
    TALLY.require("sources: CSV rows")


# ---------------------------------------------------------------------------
# JSONL: one fault in a good file is found at its line and field
# ---------------------------------------------------------------------------

WRONG_TEXT = [None, True, 1.5, [], {}, ["a"], 1e400, ""]
WRONG_FEATURES = [None, "1", "", {}, 3, [], [[1.0]], [1.0, "2"], [True], [None], [float("nan")], [float("inf")],
                  [1e39], [10**400], [-(10**40)]]
JSONL_FAULTS = ["none", "not_json", "not_object", "id", "label", "owner", "missing_id", "missing_features",
                "features", "width", "dup_id", "nul", "deep", "huge_int", "blank_lines"]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)  # NaN and Infinity are what a careless writer emits


@st.composite
def jsonl_case(draw) -> tuple[bytes, dict[str, Any], tuple[int, str | None] | None]:
    tab = draw(table())
    objs: list[dict[str, Any]] = []
    for i in range(len(tab["ids"])):
        o: dict[str, Any] = {"id": tab["ids"][i], "label": tab["labels"][i], "features": tab["features"][i]}
        if tab["owners"] is not None:
            o["owner"] = tab["owners"][i]
        objs.append(o)
    lines: list[str] = [_dumps(o) for o in objs]
    fault = draw(st.sampled_from(JSONL_FAULTS))
    if fault in ("dup_id", "width") and len(objs) < 2:
        fault = "none"
    at = draw(st.integers(1 if fault in ("dup_id", "width") else 0, len(objs) - 1))
    o = objs[at]
    where: tuple[int, str | None] | None = (at + 1, None)
    if fault == "none":
        where = None
    elif fault == "not_json":
        lines[at] = draw(st.sampled_from(["{", "{'id': 1}", "[1,", "{\"id\": 01}", "nul", "{\"a\":1}}", "\x00"]))
    elif fault == "not_object":
        lines[at] = _dumps(draw(st.sampled_from([[1], "s", 3, None, True])))
    elif fault in ("id", "label"):
        o[fault] = draw(st.sampled_from(WRONG_TEXT))
        where = (at + 1, fault)
        lines[at] = _dumps(o)
    elif fault == "owner":
        o["owner"] = draw(st.sampled_from([True, 1.5, [], {}, "o" * 257, "a\x00"]))
        where = (at + 1, "owner")
        lines[at] = _dumps(o)
    elif fault == "missing_id":
        del o["id"]
        where = (at + 1, "id")
        lines[at] = _dumps(o)
    elif fault == "missing_features":
        del o["features"]
        where = (at + 1, "features")
        lines[at] = _dumps(o)
    elif fault == "features":  # every one of these is wrong, whatever the width: named features or features[j]
        o["features"] = draw(st.sampled_from(WRONG_FEATURES))
        where = (at + 1, "features")
        lines[at] = _dumps(o)
    elif fault == "width":
        o["features"] = o["features"] + [0.0]
        where = (at + 1, "features")
        lines[at] = _dumps(o)
    elif fault == "dup_id":
        o["id"] = objs[draw(st.integers(0, at - 1))]["id"]
        where = (at + 1, "id")
        lines[at] = _dumps(o)
    elif fault == "nul":
        o["id"] = "x\x00y"
        where = (at + 1, "id")
        lines[at] = _dumps(o)
    elif fault == "deep":
        lines[at] = "[" * 100_000 + "]" * 100_000
    elif fault == "huge_int":  # more digits than int() reads by default
        lines[at] = _dumps({**o, "id": 0}).replace('"id": 0', '"id": ' + "9" * 5000)
    elif fault == "blank_lines":
        lines[at] = "  \t " + "\n" + lines[at]  # a blank line is skipped but still counted
        where = None
    return ("\n".join(lines) + "\n").encode(), tab, where


@fuzz(200)
@given(case=jsonl_case())
def _jsonl(tmp_path_factory, case) -> None:
    data, tab, where = case
    path = tmp_path_factory.getbasetemp() / f"j{next(_n)}.jsonl"
    path.write_bytes(data)
    try:
        t = load_source(DatasetSource(uri=str(path)))
    except InvalidInput as e:
        TALLY.seen("sources: JSONL rows", accepted=False)
        assert where is not None, f"a good file was refused: {e}"
        line, field = where
        msg = str(e)
        place(msg, path.name, line, None)
        if field is not None:  # features[j] is named as such
            assert f"field {field!r}" in msg or f"field '{field}[" in msg, msg
        return
    finally:
        path.unlink()
    TALLY.seen("sources: JSONL rows", accepted=True)
    assert where is None, f"a bad file was accepted (fault expected at {where})"
    check_accepted(t, tab)


def test_jsonl_rows_load_exactly_or_name_line_and_field(tmp_path_factory):
    _jsonl(tmp_path_factory)
    TALLY.require("sources: JSONL rows")


# ---------------------------------------------------------------------------
# raw bytes, through the ingest both bodies run: a refusal writes nothing
# ---------------------------------------------------------------------------

PREFIXES = [b"", b"id,label,f\n", b"id,label,owner,f1,f2\n", b"id,label,f\n1,2,3\n",
            b'{"id": "a", "label": 1, "features": [1]}\n', b"\xef\xbb\xbfid,label,f\n",
            b'{"id": 1, "label": 2, "features": [1, 2]}\n']


@fuzz(120)
@given(ext=st.sampled_from([".csv", ".jsonl"]), prefix=st.sampled_from(PREFIXES),
       body=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode),
                      st.lists(st.sampled_from([*NASTY_STRINGS, ",", "\n", '"', "1", "1e39", "nan", "[", "]", "{",
                                                '"features":', "\r", "\x00"]), max_size=12).map(
                                                    lambda xs: "".join(xs).encode(errors="surrogatepass"))))
def _raw_ingest(tmp_path_factory, ext: str, prefix: bytes, body: bytes) -> None:
    base = tmp_path_factory.getbasetemp() / f"r{next(_n)}"
    base.mkdir()
    path = base / f"data{ext}"
    path.write_bytes(prefix + body)
    store = LocalStore(base / "store")
    ds = Dataset.model_validate({"kind": "Dataset", "metadata": {"name": "raw"},
                                 "spec": {"source": {"uri": str(path)}}})
    Registry(store, "default").apply(ds)
    before = snapshot(store.root)
    try:
        load_source(ds.spec.source)
        loads = None
    except InvalidInput as e:
        loads = str(e)
        assert str(e).startswith(str(path)), e
    status = StoreControl(store, "default").reconcile_dataset(ds)
    if loads is None:
        TALLY.seen("sources: raw bytes ingest", accepted=True)
        assert status.phase == "Ready" and status.samples, status
    else:
        TALLY.seen("sources: raw bytes ingest", accepted=False)
        assert status.phase == "Failed" and status.message == loads, status
        assert status.condition("Ready").reason == "IngestFailed"
        assert snapshot(store.root) == before, "a failed ingest wrote to the store"


def test_raw_bytes_ingest_whole_or_write_nothing(tmp_path_factory):
    _raw_ingest(tmp_path_factory)
    TALLY.require("sources: raw bytes ingest")


# ---------------------------------------------------------------------------
# image folders with bad files
# ---------------------------------------------------------------------------


def _image(fmt: str, mode: str, size: tuple[int, int]) -> bytes:
    arr = (np.arange(size[0] * size[1]) % 251).reshape(size[1], size[0])
    img = Image.fromarray(arr.astype(np.uint16 if mode == "I;16" else np.uint8))
    img = img if mode in ("L", "I;16") else img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A PNG header that claims 30000 x 30000 pixels: PIL refuses it as a decompression bomb before decoding.
BOMB = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))
GOOD = {"png-L": ("PNG", "L"), "png-RGB": ("PNG", "RGB"), "png-RGBA": ("PNG", "RGBA"), "png-I16": ("PNG", "I;16"),
        "png-P": ("PNG", "P"), "jpeg": ("JPEG", "L"), "jpeg-RGB": ("JPEG", "RGB")}
BAD = ["gif", "bmp", "random", "empty", "truncated", "bomb", "folder", "missing", "text"]
GOOD_NAMES = ["a.png", "sub/b.png", "ünï.png", "x y.jpg", "🦀.png", "no-extension", "a.PNG", ".hidden.png"]
BAD_NAMES = ["../escape.png", "/etc/passwd", "sub/../a.png", "./a.png", "a//b.png", "a\\b.png", "sub/", ".."]


def _write_file(folder: Path, rel: str, kind: str, draw) -> None:
    path = folder.joinpath(*rel.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    if kind in GOOD:
        path.write_bytes(_image(*GOOD[kind], size))
    elif kind == "gif":
        path.write_bytes(_image("GIF", "L", size))
    elif kind == "bmp":
        path.write_bytes(_image("BMP", "L", size))
    elif kind == "random":
        path.write_bytes(draw(st.binary(min_size=1, max_size=64)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = _image("PNG", "L", (12, 12))
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bomb":
        path.write_bytes(BOMB)
    elif kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("not an image at all\n")


@st.composite
def image_folder(draw) -> tuple[list[tuple[str, str]], str | None]:
    """[(name in labels.csv, kind of file)], and the labelsFile setting."""
    n = draw(st.integers(1, 4))
    entries = []
    names = set()
    for _ in range(n):
        if draw(st.integers(0, 5)) == 0:
            name = draw(st.sampled_from(BAD_NAMES))
        else:
            name = draw(st.sampled_from(GOOD_NAMES).filter(lambda s: s not in names))
        names.add(name)
        kind = draw(st.sampled_from(list(GOOD))) if draw(st.integers(0, 2)) else draw(st.sampled_from(BAD))
        entries.append((name, kind))
    labels_file = draw(st.one_of(st.none(), st.sampled_from(["labels.csv", "../labels.csv", "/labels.csv", "a/../b"])))
    return entries, labels_file


@fuzz(80)
@given(case=image_folder(), size=st.integers(4, 16), data=st.data())
def _images(tmp_path_factory, case, size: int, data) -> None:
    entries, labels_file = case
    folder = tmp_path_factory.getbasetemp() / f"img{next(_n)}"
    folder.mkdir()
    rows = [["file", "label"]]
    written: set[str] = set()
    for i, (name, kind) in enumerate(entries):
        rows.append([name, str(i % 2)])
        if name not in BAD_NAMES and kind != "missing" and name not in written:
            _write_file(folder, name, kind, data.draw)
            written.add(name)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (folder / "labels.csv").write_text(buf.getvalue(), encoding="utf-8")
    src = {"uri": str(folder), "imageSize": size} | ({"labelsFile": labels_file} if labels_file else {})
    dup = len({posix_stem(n) for n, _ in entries}) < len(entries)
    try:
        t = load_source(DatasetSource(**src))
    except USER_ERRORS as e:
        TALLY.seen("sources: image folders", accepted=False)
        msg = str(e)
        if labels_file not in (None, "labels.csv"):
            assert "source.labelsFile" in msg, msg
            return
        bad_name = next((i for i, (n, _) in enumerate(entries) if n in BAD_NAMES), None)
        bad_kind = next((i for i, (_, k) in enumerate(entries) if k not in GOOD), None)
        line = bad_name if bad_name is not None else bad_kind
        if line is None:
            assert dup and "duplicate id" in msg, f"a good folder was refused: {msg}"
            return
        if dup and "duplicate id" in msg:
            return
        place(msg, "labels.csv", line + 2, "file")
        return
    TALLY.seen("sources: image folders", accepted=True)
    assert labels_file in (None, "labels.csv") and not dup
    assert all(n not in BAD_NAMES and k in GOOD for n, k in entries), f"a bad folder was accepted: {entries}"
    assert t.features.shape == (len(entries), 1, size, size) and np.isfinite(t.features).all()
    assert float(t.features.min()) >= 0.0 and float(t.features.max()) <= 1.0


def posix_stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name


def test_image_folders_load_or_name_the_bad_file(tmp_path_factory):
    _images(tmp_path_factory)
    TALLY.require("sources: image folders")


# ---------------------------------------------------------------------------
# source URIs: paths and schemes that go nowhere
# ---------------------------------------------------------------------------

URIS = ["", " ", "missing.csv", "/nonexistent/x.csv", "../../../../etc/shadow", "file://host/x.csv", "file:x.csv",
        "file:///nonexistent.jsonl", "http://example.com/x.csv", "ftp://x", "s3://", "s3:///key.csv", "s3://b",
        "s3://b/", "s3://b/../x.csv", "s3://b/a//b.csv", "s3://b/missing.csv", "s3://b/data.csv", "s3://b/imgs",
        "~/nope.csv", "data.parquet", "/dev/null", "/proc/self/environ", "/", "C:\\x.csv", "\x00", "a\x00.csv",
        "s3://b/k\x00.csv", "s3://b/" + "k" * 2000 + ".csv", "S3://b/data.csv"]


@fuzz(80)
@given(uri=st.one_of(st.sampled_from(URIS), st.text(max_size=40)),
       fmt=st.sampled_from([None, "csv", "jsonl", "images"]))
def _uris(bucket: Store, prop: str, uri: str, fmt: str | None) -> None:
    try:
        source = DatasetSource(uri=uri, format=fmt)
    except ValueError as e:  # pydantic's ValidationError: it names the field
        TALLY.seen(prop, accepted=False)
        assert "uri" in str(e) or "format" in str(e), e
        return
    try:
        t = load_source(source, store_opener=lambda _: bucket)
    except ShardwiseError as e:
        TALLY.seen(prop, accepted=False)
        assert isinstance(e, USER_ERRORS), f"{type(e).__name__}: {e}"
        assert "source" in str(e) or (uri.strip() and uri.strip() in str(e)) or repr(uri) in str(e), e
        return
    TALLY.seen(prop, accepted=True)
    assert len(t) > 0


@pytest.fixture(params=["local", "s3"])
def bucket(request, tmp_path) -> Store:
    """What s3://b/ holds: data.csv and an image folder, in a LocalStore or in SeaweedFS (a real S3 server)."""
    store = LocalStore(tmp_path / "bucket") if request.param == "local" else request.getfixturevalue("s3_store")
    store.put_bytes("data.csv", b"id,label,f\na,1,0.5\n")
    store.put_bytes("imgs/labels.csv", b"file,label\na.png,1\n")
    store.put_bytes("imgs/a.png", _image("PNG", "L", (5, 5)))
    return store


def test_source_uris_load_or_name_the_source(bucket):
    prop = f"sources: URIs ({type(bucket).__name__})"
    _uris(bucket, prop)
    TALLY.require(prop)


# ---------------------------------------------------------------------------
# rows given to `shardwise predict` (read before the model is asked)
# ---------------------------------------------------------------------------

PREDICT_PREFIXES = ["id,a,b\n", "a,b\n", "a,b,id\n", "label,a,b\n", "", "a,b\nx\n", "id,a,b\n1,2,3\n"]
PREDICT_JSONL = ['{"features": [1, 2]}', '{"id": "a", "features": [1, 2]}', '{"features": [1]}', "[1, 2]", '"x"',
                 "3", "null", '{"features": null}', '{"features": "12"}', '{"features": [NaN, 1]}',
                 '{"features": [Infinity, 1]}', '{"features": [1e39, 1]}', '{"features": [1, [2]]}',
                 '{"features": {"a": 1}}', "[" * 50_000 + "]" * 50_000, '{"id": ' + "9" * 5000 + "}", "{"]
PREDICT_CELLS = ["1", "2.5", "-0", "nan", "inf", "-inf", "1e39", "", " ", "x", "0x1", "1,2", '"', "\x00", "🦀"]


@st.composite
def predict_file(draw) -> tuple[str, bytes]:
    if draw(st.booleans()):
        lines = draw(st.lists(st.sampled_from(PREDICT_JSONL), max_size=4))
        data = "\n".join(lines).encode()
        ext = ".jsonl"
    else:
        rows = draw(st.lists(st.lists(st.sampled_from(PREDICT_CELLS), max_size=4), max_size=4))
        data = (draw(st.sampled_from(PREDICT_PREFIXES)) + "".join(",".join(r) + "\n" for r in rows)).encode()
        ext = ".csv"
    if draw(st.integers(0, 5)) == 0:
        data = draw(st.binary(max_size=12)) + data  # often not UTF-8
    return ext, data


@fuzz(150)
@given(case=predict_file())
@example(case=(".csv", b"a,id\n1\n"))  # the id column is missing from a row whose features are fine
@example(case=(".csv", b"a,b\n\xff\xfe,1\n"))
@example(case=(".jsonl", ("[" * 50_000 + "]" * 50_000).encode()))
@example(case=(".csv", b"a,b\nnan,1\n"))
@example(case=(".folder", b""))  # a folder given as the file
def _predict_rows(tmp_path_factory, case) -> None:
    from shardwise.predict import read_features

    ext, data = case
    path = tmp_path_factory.getbasetemp() / f"p{next(_n)}{ext}"
    if ext == ".folder":
        path.mkdir()
    else:
        path.write_bytes(data)
    try:
        ids, x = read_features(path, ["a", "b"])
    except InvalidInput as e:
        TALLY.seen("sources: predict rows", accepted=False)
        assert str(e).startswith(str(path)), e
        return
    finally:
        path.rmdir() if ext == ".folder" else path.unlink()
    TALLY.seen("sources: predict rows", accepted=True)
    assert x.shape == (len(ids), 2) and x.dtype == np.float32
    assert np.isfinite(x).all(), f"non-finite features were accepted: {x}"


def test_predict_rows_read_or_name_the_line(tmp_path_factory):
    _predict_rows(tmp_path_factory)
    TALLY.require("sources: predict rows")
