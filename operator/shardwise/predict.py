"""Predict with a model's published version (`shardwise predict MODEL FILE`).

Features are matched by name, never by position: a CSV's header must name every feature of the
model's Dataset (in any order); other columns are refused, but for the Dataset's id, label and
owner columns, which are ignored (the id column, when there, names each output row). A JSONL row
gives either the `features` list (in the Dataset's order, as a JSONL Dataset holds them) or one
key per feature name, not both.
Image Datasets name their pixels p0, p1, ... (channel, row, column order).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shardwise.api import ShardedModel
from shardwise.brain.ensemble import aggregate
from shardwise.brain.versions import VersionManifest
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput, NotFound, reading
from shardwise.store.base import Store
from shardwise.store.layout import Layout

RESERVED = ("id", "label", "owner")
SHOWN = 8  # names listed in a message


def _names(names: list[str]) -> str:
    return ", ".join(map(repr, names[:SHOWN])) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def read_features(path: Path, names: list[str], ignored: tuple[str, ...] = RESERVED,
                  features_key: str = "features", id_column: str = "id") -> tuple[list[str], np.ndarray]:
    """(ids, float32 rows in the order of `names`) from a CSV or JSONL file.

    ignored: columns (keys) that are not features and are skipped; id_column (one of them) gives
    each row's id, which defaults to the row's line number after the header.
    """
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    ids: list[str] = []
    rows: list[list[float]] = []
    lines: list[int] = []  # each row's line in the file, for messages
    with reading(str(path)):
        if path.suffix in (".jsonl", ".ndjson"):
            _read_jsonl(path, names, ignored, features_key, id_column, ids, rows, lines)
        else:
            _read_csv(path, names, ignored, id_column, ids, rows, lines)
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(names))
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:  # NaN, inf, or beyond float32: the model would answer NaN
        n, j = bad[0]
        raise InvalidInput(f"{path} line {lines[n]}, field {names[j]!r}: {rows[n][j]!r} is not a finite float32 "
                           "number")
    return ids, x


def _read_csv(path: Path, names: list[str], ignored: tuple[str, ...], id_column: str, ids: list[str],
              rows: list[list[float]], lines: list[int]) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise InvalidInput(f"{path}: empty file; a header row naming the feature columns is required")
            header = [h.strip() for h in header]
            dup = next((h for h in header if header.count(h) > 1), None)
            if dup is not None:
                raise InvalidInput(f"{path} line 1, field {dup!r}: the header names this column twice")
            unknown = [h for h in header if h not in names and h not in ignored]
            if unknown:
                raise InvalidInput(f"{path} line 1: column(s) {_names(unknown)} are not features of the model's "
                                   f"Dataset (its features: {_names(names)})")
            missing = [n for n in names if n not in header]
            if missing:
                raise InvalidInput(f"{path} line 1: feature column(s) {_names(missing)} are missing "
                                   f"(the model needs all {len(names)})")
            cols = [header.index(n) for n in names]
            id_col = header.index(id_column) if id_column in header else None
            needed = sorted(cols + ([id_col] if id_col is not None else []))
            for n, row in enumerate(reader, 2):
                if not any(c.strip() for c in row):
                    continue
                if needed and len(row) <= needed[-1]:
                    short = header[next(i for i in needed if i >= len(row))]
                    raise InvalidInput(f"{path} line {n}, field {short!r}: missing (the row has {len(row)} of the "
                                       f"header's {len(header)} fields)")
                try:
                    rows.append([float(row[i]) for i in cols])
                except ValueError:
                    bad = next(names[k] for k, i in enumerate(cols) if not _num(row[i]))
                    raise InvalidInput(f"{path} line {n}, field {bad!r}: not a number") from None
                lines.append(n)
                ids.append(row[id_col] if id_col is not None else str(n - 1))
        except csv.Error as e:
            raise InvalidInput(f"{path} line {reader.line_num}: malformed CSV: {e}") from None


def _read_jsonl(path: Path, names: list[str], ignored: tuple[str, ...], features_key: str, id_column: str,
                ids: list[str], rows: list[list[float]], lines: list[int]) -> None:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise InvalidInput(f"{where}: invalid JSON: {type(e).__name__}: {str(e)[:80]}") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"{where}: expected a JSON object with {features_key!r} or the feature names")
        unknown = [k for k in obj if k not in ignored and k != features_key and k not in names]
        if unknown:
            raise InvalidInput(f"{where}: key(s) {_names(unknown)} are not features of the model's Dataset "
                               f"(its features: {_names(names)})")
        named = [k for k in obj if k in names]
        if features_key in obj and named:  # two answers for one feature: which would be meant?
            raise InvalidInput(f"{where}: give {features_key!r} or the features by name, not both (it has "
                               f"{features_key!r} and {_names(named)})")
        if features_key in obj:
            feats = obj[features_key]
            if not isinstance(feats, list) or len(feats) != len(names):
                got = f"{len(feats)} value(s)" if isinstance(feats, list) else "not a list"
                raise InvalidInput(f"{where}, field {features_key!r}: {got}; the model expects {len(names)}")
            values = feats
        else:
            missing = [k for k in names if k not in obj]
            if missing:
                raise InvalidInput(f"{where}: feature(s) {_names(missing)} are missing (give {features_key!r} "
                                   "or every feature by name)")
            values = [obj[k] for k in names]
        try:
            rows.append([_float(v) for v in values])
        except (ValueError, TypeError):
            j = next(j for j, v in enumerate(values) if not _is_number(v))
            raise InvalidInput(f"{where}, field {names[j]!r}: {json.dumps(values[j])[:40]} is not a number") from None
        lines.append(n)
        sid = obj.get(id_column, n)
        ids.append(str(sid) if not isinstance(sid, (dict, list)) else str(n))


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("not a number")
    return float(v)


def _is_number(v: Any) -> bool:
    try:
        _float(v)
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def feature_names(schema) -> list[str]:
    """The names a predict file uses: the Dataset's feature columns, or p0, p1, ... for images."""
    if schema.featureNames:
        return list(schema.featureNames)
    return [f"p{j}" for j in range(int(np.prod(schema.sampleShape)))]


def predict_file(store: Store, namespace: str, model: ShardedModel, path: Path) -> Iterator[dict[str, Any]]:
    from shardwise_trainer.train import predict_proba

    L = Layout(namespace)
    uid = model.metadata.uid or ""
    try:
        n = store.get_json(L.current(model.name, uid))["version"]
    except NotFound:
        raise NotFound(f"ShardedModel {model.name} has no published version yet") from None
    version = VersionManifest.from_dict(store.get_json(L.version(model.name, uid, n)))
    datasets = DatasetStore(store, L)
    schema = datasets.schema(model.spec.datasetRef)
    if schema is None:
        raise NotFound(f"Dataset {model.spec.datasetRef} of ShardedModel {model.name} has no schema in the store")
    src = schema.source.get("source", {})
    id_column = src.get("idColumn", "id")
    ignored = (id_column, src.get("labelColumn", "label"), src.get("ownerColumn", "owner"))
    ids, X = read_features(path, feature_names(schema), ignored, src.get("featuresColumn", "features"), id_column)
    shape = tuple(schema.sampleShape)
    probs = aggregate(predict_proba(store, model.spec, version.finals(), X.reshape((-1, *shape)),
                                    len(schema.classes)), model.spec.aggregation, version.voting())
    for i, p in zip(ids, probs):
        k = int(p.argmax())
        yield {"id": i, "prediction": schema.classes[k], "score": round(float(p[k]), 4), "version": n}
