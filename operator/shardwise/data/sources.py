"""Read a DatasetSource into a SampleTable: builtin digits, CSV, JSONL or a folder of images.

The one public entry point is `load_source`. It either returns a complete
SampleTable or raises; it never writes anything. Every complaint about the
data is an InvalidInput whose message starts with the file and the 1-based line
(as a text editor numbers it; a CSV header is line 1) and names the field, e.g.

    data.csv line 7, field 'label': empty value
    data.csv line 9, field 'id': duplicate id 'a17' (first on line 4)

A source that does not exist at all is NotFound.

Conventions (shared by every format):
- ids, labels and owner keys are stripped of surrounding whitespace; an empty
  id or label is an error, an empty owner means "no owner".
- labels are text; class_names are the distinct labels sorted numerically when
  every label is an integer ("2" < "10"), else sorted as strings.
- features are float32 and must be finite (NaN, inf and values outside the
  float32 range are refused).
- lines that are blank (or CSV rows whose cells are all blank) are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from shardwise.api.dataset import DatasetSource
from shardwise.data.table import SampleTable
from shardwise.errors import InvalidInput, NotFound, StoreUnavailable
from shardwise.store.base import Store, check_key

__all__ = ["load_source", "MAX_ROWS", "MAX_FEATURES"]

MAX_ROWS = 10_000_000
MAX_FEATURES = 100_000
MAX_KEY_BYTES = 1024  # the S3 limit on an object key
MAX_SAMPLE_KEY = 256  # characters of a sample id or owner key: what a ForgetRequest can name

# What PIL reports for the image files we accept (MPO: JPEG with extra frames, as cameras write).
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}

_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# At most 4000 digits: int() refuses longer strings (sys.int_info.str_digits_check_threshold).
_INTEGER = re.compile(r"[+-]?[0-9]{1,4000}")

StoreOpener = Callable[[str], Store]


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def load_source(source: DatasetSource, *, store_opener: StoreOpener | None = None,
                classes: list[str] | None = None) -> SampleTable:
    """Read every sample of `source`.

    store_opener maps "s3://bucket" to a Store; it defaults to
    shardwise.store.open_store (imported only when an s3:// uri is read).
    classes: the class list, fixed (the Dataset's spec.classes, or the list its first ingest
    recorded); a label outside it is an error naming the row. None: the distinct labels.
    """
    if source.builtin is not None:
        if source.builtin == "digits":
            return _with_classes(load_digits(source.ownersPerSample), classes, "digits")
        raise InvalidInput(f"source.builtin {source.builtin!r} is not a known dataset; use 'digits'")
    if source.ownersPerSample:
        raise InvalidInput(
            "source.ownersPerSample applies to builtin datasets only; "
            f"give {source.uri!r} an owner column ({source.ownerColumn!r}) instead"
        )
    uri = source.uri or ""
    if not uri.strip():
        raise InvalidInput("source.uri is empty")
    loc = _locate(uri, store_opener)
    fmt = _resolve_format(loc, source.format)
    if fmt == "csv":
        return load_csv(loc, source, classes)
    if fmt == "jsonl":
        return load_jsonl(loc, source, classes)
    return load_images(loc, source, classes)


def _with_classes(table: SampleTable, classes: list[str] | None, name: str) -> SampleTable:
    """A table whose labels are codes into `classes` (the builtin's own list when None)."""
    if classes is None:
        return table
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in table.class_names if c not in index]
    if missing:
        raise InvalidInput(f"{name}: label {missing[0]!r} is not one of spec.classes")
    remap = np.array([index[c] for c in table.class_names], dtype=np.int64)
    return dataclasses.replace(table, labels=remap[table.labels], class_names=tuple(classes))


# ---------------------------------------------------------------------------
# builtin
# ---------------------------------------------------------------------------


def load_digits(owners_per_sample: int = 0) -> SampleTable:
    """scikit-learn's 1,797 8x8 digits (shipped with the package, no download)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    x, y = _sk_load_digits(return_X_y=True)
    n = len(y)
    if owners_per_sample > 0:
        # Rows are already grouped by writer, so consecutive runs make plausible "subjects".
        owners = np.array([f"subject-{i // owners_per_sample:04d}" for i in range(n)], dtype=str)
    else:
        owners = np.full(n, "", dtype=str)
    return SampleTable(
        ids=np.array([f"digits-{i:05d}" for i in range(n)], dtype=str),
        labels=np.asarray(y, dtype=np.int64),
        # 8x8 grayscale images, shaped as every image source is: (N, 1, H, W)
        features=(np.asarray(x, dtype=np.float64) / 16.0).astype(np.float32).reshape(n, 1, 8, 8),
        owners=owners,
        class_names=tuple(str(c) for c in range(10)),
    )


# ---------------------------------------------------------------------------
# where the bytes are: a local path or an object in a Store
# ---------------------------------------------------------------------------


class _Local:
    def __init__(self, name: str, path: Path):
        self.name = name  # as the user spelt it; used in messages
        self.path = path

    def kind(self) -> str | None:
        """'file', 'folder', or None when nothing is there."""
        try:
            if self.path.is_dir():
                return "folder"
            if self.path.is_file():
                return "file"
            if self.path.exists():
                raise InvalidInput(f"{self.name}: not a regular file or folder")
        except OSError as e:
            raise InvalidInput(f"{self.name}: cannot be read: {e.strerror or e}") from None
        return None

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        try:
            fp = open(self.path, "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.name}: no such file") from None
        except IsADirectoryError:
            raise InvalidInput(f"{self.name}: is a folder, not a file") from None
        except OSError as e:
            raise InvalidInput(f"{self.name}: cannot be read: {e.strerror or e}") from None
        with fp:
            yield fp

    def read(self) -> bytes:
        with self.open() as fp:
            try:
                return fp.read()
            except OSError as e:
                raise InvalidInput(f"{self.name}: cannot be read: {e.strerror or e}") from None

    def child(self, rel: str) -> _Local:
        return _Local(f"{self.name.rstrip('/')}/{rel}", self.path.joinpath(*rel.split("/")))


class _Stored:
    def __init__(self, name: str, store: Store, key: str):
        self.name = name
        self.store = store
        self.key = key  # "" or ending in "/" for a folder

    def kind(self) -> str | None:
        if self.key.rstrip("/"):  # refused here, naming the source, before any store call sees the key
            try:
                check_key(self.key.rstrip("/"))
            except InvalidInput:
                raise InvalidInput(f"{self.name}: {self.key!r} is not a valid object key") from None
            if len(self.key.encode()) > MAX_KEY_BYTES:
                raise InvalidInput(f"{self.name}: the object key is longer than {MAX_KEY_BYTES} bytes")
        if self.key == "" or self.key.endswith("/"):
            return "folder"
        with self._named():
            if self.store.exists(self.key):
                return "file"
            if self.store.list(self.key + "/"):
                self.key += "/"
                return "folder"
        return None

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """A store that refuses (credentials that do not reach the bucket) or is down: say which source."""
        try:
            yield
        except StoreUnavailable as e:
            raise StoreUnavailable(f"source uri {self.name!r}: {e}") from None

    def read(self) -> bytes:
        if self.key == "" or self.key.endswith("/"):
            raise InvalidInput(f"{self.name}: is a folder, not a file")
        try:
            check_key(self.key)
        except InvalidInput:
            raise InvalidInput(f"{self.name}: {self.key!r} is not a valid object key") from None
        try:
            with self._named():
                return self.store.get_bytes(self.key)
        except NotFound:
            raise NotFound(f"{self.name}: no such object") from None

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        yield io.BytesIO(self.read())

    def child(self, rel: str) -> _Stored:
        prefix = self.key if self.key == "" or self.key.endswith("/") else self.key + "/"
        return _Stored(f"{self.name.rstrip('/')}/{rel}", self.store, prefix + rel)


_Location = _Local | _Stored


def _default_opener(uri: str) -> Store:
    from shardwise.store import open_store  # lazily: only s3 sources need it

    return open_store(uri)


def _locate(uri: str, store_opener: StoreOpener | None) -> _Location:
    m = _SCHEME.match(uri)
    if m is None:
        return _Local(uri, Path(uri).expanduser())
    scheme = m.group(1).lower()
    rest = uri[m.end() :]
    if scheme == "file":
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost") or not slash:
            raise InvalidInput(f"source uri {uri!r}: a file:// uri must be file:///absolute/path")
        from urllib.parse import unquote

        return _Local(uri, Path("/" + unquote(path)))
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise InvalidInput(f"source uri {uri!r}: no bucket; write s3://bucket/key")
        store = (store_opener or _default_opener)(f"s3://{bucket}")
        return _Stored(uri, store, key)
    raise InvalidInput(f"source uri {uri!r}: unsupported scheme {scheme!r}; use a local path, file:// or s3://")


def _resolve_format(loc: _Location, fmt: str | None) -> str:
    kind = loc.kind()
    if kind is None:
        raise NotFound(f"source uri {loc.name!r}: no such file or folder")
    if fmt is None:
        if kind == "folder":
            return "images"
        fmt = _EXTENSIONS.get(posixpath.splitext(loc.name)[1].lower())
        if fmt is None:
            raise InvalidInput(
                f"source uri {loc.name!r}: cannot tell the format from the name; "
                "use a .csv, .jsonl or .ndjson file or a folder of images, or set source.format"
            )
        return fmt
    if fmt == "images" and kind != "folder":
        raise InvalidInput(f"source uri {loc.name!r}: format 'images' needs a folder, this is a file")
    if fmt != "images" and kind != "file":
        raise InvalidInput(f"source uri {loc.name!r}: format {fmt!r} needs a file, this is a folder")
    return fmt


# ---------------------------------------------------------------------------
# shared row machinery
# ---------------------------------------------------------------------------


def _where(name: str, line: int, field: str | None = None) -> str:
    return f"{name} line {line}" + (f", field {field!r}" if field is not None else "")


def _text_lines(fp: IO[bytes], name: str) -> Iterator[str]:
    """Decode line by line, so that a bad byte is reported on its own line."""
    for n, raw in enumerate(fp, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            where = _where(name, n)
            raise InvalidInput(f"{where}: not UTF-8 text ({e.reason} at byte {e.start + 1} of the line)") from None
        if n == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def _csv_rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, cells) for every row that is not blank."""
    reader = csv.reader(lines, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InvalidInput(f"{_where(name, start)}: malformed CSV: {e}") from None
        if all(not c.strip() for c in row):
            continue
        yield start, row


def _clean(name: str, line: int, field: str, raw: str, *, required: bool) -> str:
    value = raw.strip()
    if required and not value:
        raise InvalidInput(f"{_where(name, line, field)}: empty value")
    if "\x00" in value:
        raise InvalidInput(f"{_where(name, line, field)}: contains a NUL character")
    return value


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Rows:
    """Collects ids, labels and owners; refuses duplicates and too many rows."""

    def __init__(self, name: str, id_field: str, owner_field: str):
        self.name = name
        self.id_field = id_field
        self.owner_field = owner_field
        self.ids: list[str] = []
        self.labels: list[str] = []
        self.owners: list[str] = []
        self.first_line: dict[str, int] = {}

    def check_room(self, line: int) -> None:
        if len(self.ids) >= MAX_ROWS:
            raise InvalidInput(
                f"{_where(self.name, line)}: more than {MAX_ROWS:,} rows; a dataset holds at most {MAX_ROWS:,} samples"
            )

    def check_id(self, line: int, sid: str) -> None:
        if len(sid) > MAX_SAMPLE_KEY:  # a ForgetRequest names ids of at most this length
            raise InvalidInput(f"{_where(self.name, line, self.id_field)}: the id is {len(sid)} characters long; "
                               f"at most {MAX_SAMPLE_KEY} are allowed")
        first = self.first_line.get(sid)
        if first is not None:
            where = _where(self.name, line, self.id_field)
            raise InvalidInput(f"{where}: duplicate id {sid!r} (first on line {first})")

    def check_owner(self, line: int, owner: str) -> None:
        if len(owner) > MAX_SAMPLE_KEY:  # and owner keys of at most this length
            raise InvalidInput(f"{_where(self.name, line, self.owner_field)}: the owner key is {len(owner)} "
                               f"characters long; at most {MAX_SAMPLE_KEY} are allowed")

    def add(self, line: int, sid: str, label: str, owner: str) -> None:
        self.first_line[sid] = line
        self.ids.append(sid)
        self.labels.append(label)
        self.owners.append(owner)

    def __len__(self) -> int:
        return len(self.ids)

    def table(self, features: np.ndarray, classes: list[str] | None = None, label_field: str = "label",
              feature_names: tuple[str, ...] | None = None) -> SampleTable:
        if classes is not None:
            known = set(classes)
            bad = next((k for k, t in enumerate(self.labels) if t not in known), None)
            if bad is not None:
                line = self.first_line[self.ids[bad]]
                raise InvalidInput(f"{_where(self.name, line, label_field)}: {self.labels[bad]!r} is not one of the "
                                   f"Dataset's classes ({', '.join(classes[:20])}"
                                   f"{' ...' if len(classes) > 20 else ''})")
        codes, class_names = encode_labels(self.labels, classes)
        return SampleTable(
            ids=np.array(self.ids, dtype=str),
            labels=codes,
            features=features,
            owners=np.array(self.owners, dtype=str),
            class_names=class_names,
            feature_names=feature_names,
        )


def encode_labels(labels: list[str], classes: list[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes into `classes`, or into the sorted distinct labels (numeric order when all are integers)."""
    distinct = set(labels)
    if classes is not None:
        names = list(classes)
    elif all(_INTEGER.fullmatch(t) for t in distinct):
        names = sorted(distinct, key=lambda t: (int(t), t))
    else:
        names = sorted(distinct)
    index = {t: i for i, t in enumerate(names)}
    codes = np.fromiter((index[t] for t in labels), dtype=np.int64, count=len(labels))
    return codes, tuple(names)


class _Matrix:
    """Float32 rows of a fixed width, gathered in chunks of about CHUNK_BYTES."""

    CHUNK_BYTES = 1 << 24

    def __init__(self, width: int):
        self.width = width
        self.chunk_rows = max(1, min(8192, self.CHUNK_BYTES // (4 * width)))
        self.chunks: list[np.ndarray] = []
        self.current = np.empty((self.chunk_rows, width), dtype=np.float32)
        self.fill = 0

    def add(self, values: list[float] | list[int | float]) -> int | None:
        """Store a row; return the index of a value that is not a finite float32 instead."""
        row = self.current[self.fill]
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                row[:] = values
        except (OverflowError, ValueError, TypeError):
            return _first_non_finite(values)
        if not np.isfinite(row).all():
            return int(np.flatnonzero(~np.isfinite(row))[0])
        self.fill += 1
        if self.fill == self.chunk_rows:
            self.chunks.append(self.current)
            self.current = np.empty((self.chunk_rows, self.width), dtype=np.float32)
            self.fill = 0
        return None

    def finish(self) -> np.ndarray:
        parts = [*self.chunks, self.current[: self.fill]]
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


def _first_non_finite(values: Iterable[Any]) -> int:
    for j, v in enumerate(values):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                if not np.isfinite(np.float32(v)):
                    return j
        except (OverflowError, ValueError, TypeError):
            return j
    return 0  # unreachable in practice: the caller saw a bad value


def _non_finite_message(raw: Any) -> str:
    try:
        value = float(raw)
    except (OverflowError, ValueError):
        return f"{_describe(raw)} is outside the float32 range"
    if math.isfinite(value):
        return f"{_describe(raw)} is outside the float32 range"
    return f"{_describe(raw)} is not a finite number"


def _check_width(name: str, line: int, field: str, width: int) -> None:
    if width > MAX_FEATURES:
        raise InvalidInput(f"{_where(name, line, field)}: {width:,} features; at most {MAX_FEATURES:,} are allowed")


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _header(
    name: str, rows: Iterator[tuple[int, list[str]]], required: list[str], optional: list[str]
) -> tuple[int, list[str], dict[str, int]]:
    first = next(rows, None)
    if first is None:
        raise InvalidInput(f"{_where(name, 1)}: the file is empty; a header row naming the columns is required")
    line, cells = first
    cols = [c.strip() for c in cells]
    seen: dict[str, int] = {}
    for i, col in enumerate(cols):
        if not col:
            raise InvalidInput(f"{_where(name, line)}: header column {i + 1} has no name")
        if col in seen:
            raise InvalidInput(
                f"{_where(name, line, col)}: the header names this column twice (columns {seen[col] + 1} and {i + 1})"
            )
        seen[col] = i
    for col in required:
        if col not in seen:
            raise InvalidInput(
                f"{_where(name, line, col)}: required column is missing from the header (it has {', '.join(cols)})"
            )
    index = {col: seen[col] for col in [*required, *optional] if col in seen}
    return line, cols, index


def _row_cells(name: str, line: int, cols: list[str], row: list[str]) -> None:
    if len(row) < len(cols):
        raise InvalidInput(
            f"{_where(name, line, cols[len(row)])}: missing; the row has {len(row)} values, the header {len(cols)}"
        )
    if len(row) > len(cols):
        raise InvalidInput(
            f"{_where(name, line)}: {len(row)} values, but the header names {len(cols)} columns "
            f"(extra values after field {cols[-1]!r})"
        )


def _parse_floats(name: str, line: int, names: list[str], cells: list[str]) -> list[float]:
    try:
        return [float(c) for c in cells]
    except ValueError:
        pass
    for field, c in zip(names, cells):
        try:
            float(c)
        except ValueError:
            if not c.strip():
                raise InvalidInput(f"{_where(name, line, field)}: empty value") from None
            raise InvalidInput(f"{_where(name, line, field)}: {_describe(c)} is not a number") from None
    raise AssertionError("unreachable")


def load_csv(loc: _Location, source: DatasetSource, classes: list[str] | None = None) -> SampleTable:
    name = loc.name
    id_col, label_col, owner_col = source.idColumn, source.labelColumn, source.ownerColumn
    with loc.open() as fp:
        rows = _csv_rows(_text_lines(fp, name), name)
        header_line, cols, index = _header(name, rows, [id_col, label_col], [owner_col])
        id_i, label_i, owner_i = index[id_col], index[label_col], index.get(owner_col)
        special = {id_i, label_i, owner_i}
        feat_idx = [i for i in range(len(cols)) if i not in special]
        if not feat_idx:
            raise InvalidInput(
                f"{_where(name, header_line)}: no feature columns; every column other than "
                f"{id_col!r}, {label_col!r} and {owner_col!r} must hold a number"
            )
        _check_width(name, header_line, cols[feat_idx[-1]], len(feat_idx))
        feat_names = [cols[i] for i in feat_idx]
        lo, hi = feat_idx[0], feat_idx[-1] + 1
        contiguous = hi - lo == len(feat_idx)
        out = _Rows(name, id_col, owner_col)
        matrix = _Matrix(len(feat_idx))
        for line, row in rows:
            out.check_room(line)
            _row_cells(name, line, cols, row)
            sid = _clean(name, line, id_col, row[id_i], required=True)
            out.check_id(line, sid)
            label = _clean(name, line, label_col, row[label_i], required=True)
            owner = _clean(name, line, owner_col, row[owner_i], required=False) if owner_i is not None else ""
            out.check_owner(line, owner)
            cells = row[lo:hi] if contiguous else [row[i] for i in feat_idx]
            bad = matrix.add(_parse_floats(name, line, feat_names, cells))
            if bad is not None:
                raise InvalidInput(f"{_where(name, line, feat_names[bad])}: {_non_finite_message(cells[bad].strip())}")
            out.add(line, sid, label, owner)
    if not len(out):
        raise InvalidInput(f"{name}: no samples (the file holds only its header row)")
    return out.table(matrix.finish(), classes, label_col, tuple(feat_names))


# ---------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------

_MISSING = object()


def _json_text(name: str, line: int, field: str, value: Any, *, required: bool) -> str:
    if value is _MISSING or value is None:
        if required:
            raise InvalidInput(f"{_where(name, line, field)}: {'missing' if value is _MISSING else 'null'}")
        return ""
    if isinstance(value, str):
        return _clean(name, line, field, value, required=required)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{_where(name, line, field)}: {_describe(value)} is not a string or an integer")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def load_jsonl(loc: _Location, source: DatasetSource, classes: list[str] | None = None) -> SampleTable:
    name = loc.name
    id_col, label_col, owner_col = source.idColumn, source.labelColumn, source.ownerColumn
    feat_col = source.featuresColumn
    out = _Rows(name, id_col, owner_col)
    matrix: _Matrix | None = None
    width_line = 0
    with loc.open() as fp:
        for line, text in enumerate(_text_lines(fp, name), 1):
            text = text.strip()
            if not text:
                continue
            out.check_room(line)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidInput(f"{_where(name, line)}: invalid JSON: {e.msg} at column {e.colno}") from None
            except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4,300 digits, deep nesting
                raise InvalidInput(f"{_where(name, line)}: invalid JSON: {type(e).__name__}: {str(e)[:80]}") from None
            if not isinstance(obj, dict):
                raise InvalidInput(f"{_where(name, line)}: expected a JSON object, found {_json_kind(obj)}")
            sid = _json_text(name, line, id_col, obj.get(id_col, _MISSING), required=True)
            out.check_id(line, sid)
            label = _json_text(name, line, label_col, obj.get(label_col, _MISSING), required=True)
            owner = _json_text(name, line, owner_col, obj.get(owner_col, _MISSING), required=False)
            out.check_owner(line, owner)
            feats = obj.get(feat_col, _MISSING)
            if feats is _MISSING:
                raise InvalidInput(f"{_where(name, line, feat_col)}: missing")
            if not isinstance(feats, list):
                found = _json_kind(feats)
                raise InvalidInput(f"{_where(name, line, feat_col)}: expected a list of numbers, found {found}")
            if not feats:
                raise InvalidInput(f"{_where(name, line, feat_col)}: empty list; at least one feature is required")
            if matrix is None:
                _check_width(name, line, feat_col, len(feats))
                matrix, width_line = _Matrix(len(feats)), line
            elif len(feats) != matrix.width:
                raise InvalidInput(
                    f"{_where(name, line, feat_col)}: {len(feats)} value(s), but line {width_line} has {matrix.width}; "
                    "every sample needs the same number of features"
                )
            if not set(map(type, feats)) <= {int, float}:
                j, v = next((j, v) for j, v in enumerate(feats) if type(v) not in (int, float))
                raise InvalidInput(f"{_where(name, line, f'{feat_col}[{j}]')}: {_describe(v)} is not a number")
            bad = matrix.add(feats)
            if bad is not None:
                raise InvalidInput(f"{_where(name, line, f'{feat_col}[{bad}]')}: {_non_finite_message(feats[bad])}")
            out.add(line, sid, label, owner)
    if matrix is None or not len(out):
        raise InvalidInput(f"{name}: no samples (the file is empty)")
    return out.table(matrix.finish(), classes, label_col,
                     tuple(f"{feat_col}[{j}]" for j in range(matrix.width)))


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def _relative_path(name: str, line: int | None, field: str, rel: str) -> str:
    """A '/'-separated path inside the folder; nothing that could step outside it."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
        where = _where(name, line, field) if line is not None else f"source.{field}"
        raise InvalidInput(f"{where}: {rel!r} must be a relative path inside the folder (no '..', '/' separators)")
    return rel


def _decode_image(data: bytes, size: int) -> np.ndarray:
    """Grayscale, size x size (bilinear), values in [0, 1]."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ValueError("not an image file PIL recognises") from None
    with opened as img:
        img.load()
        kind = IMAGE_FORMATS.get(img.format or "")
        if kind is None:
            raise ValueError(f"a {img.format or 'unknown'} image; only PNG and JPEG are read")
        upright = ImageOps.exif_transpose(img)
        if upright.mode.startswith("I"):  # 16-bit grayscale PNG: keep its precision
            arr = np.asarray(upright, dtype=np.float32) / 65535.0
            small = Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR)
            return np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)
        small = upright.convert("L").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(small, dtype=np.float32) / 255.0


def _read_image_labels(fp: IO[bytes], name: str, source: DatasetSource) -> tuple[_Rows, list[tuple[int, str]]]:
    """The labels CSV: file,label[,owner][,id]; returns the rows and (line, file) of each."""
    id_col, label_col, owner_col = source.idColumn, source.labelColumn, source.ownerColumn
    rows = _csv_rows(_text_lines(fp, name), name)
    _, cols, index = _header(name, rows, ["file", label_col], [owner_col, id_col])
    out = _Rows(name, id_col, owner_col)
    files: list[tuple[int, str]] = []
    for line, row in rows:
        out.check_room(line)
        _row_cells(name, line, cols, row)
        rel = _relative_path(name, line, "file", _clean(name, line, "file", row[index["file"]], required=True))
        if id_col in index:
            sid = _clean(name, line, id_col, row[index[id_col]], required=True)
        else:
            sid = posixpath.splitext(rel)[0]
        out.check_id(line, sid)
        label = _clean(name, line, label_col, row[index[label_col]], required=True)
        owner = _clean(name, line, owner_col, row[index[owner_col]], required=False) if owner_col in index else ""
        out.check_owner(line, owner)
        out.add(line, sid, label, owner)
        files.append((line, rel))
    return out, files


def load_images(loc: _Location, source: DatasetSource, classes: list[str] | None = None) -> SampleTable:
    labels_loc = loc.child(_relative_path(loc.name, None, "labelsFile", source.labelsFile))
    name = labels_loc.name
    try:
        with labels_loc.open() as fp:
            out, files = _read_image_labels(fp, name, source)
    except NotFound:
        raise NotFound(f"{name}: no labels file (set source.labelsFile if it has another name)") from None
    if not files:
        raise InvalidInput(f"{name}: no samples (the file holds only its header row)")
    size = source.imageSize
    features = np.empty((len(files), 1, size, size), dtype=np.float32)
    for k, (line, rel) in enumerate(files):
        where = _where(name, line, "file")
        try:
            data = loc.child(rel).read()
        except NotFound:
            raise InvalidInput(f"{where}: {rel!r} is listed but not found in {loc.name}") from None
        except InvalidInput as e:
            raise InvalidInput(f"{where}: {rel!r}: {e}") from None
        try:
            features[k, 0] = _decode_image(data, size)
        except Exception as e:  # noqa: BLE001 - a decoder fed untrusted bytes can fail in many ways
            raise InvalidInput(f"{where}: {rel!r} cannot be decoded as an image: {e}") from None
    return out.table(features, classes, source.labelColumn)
