"""Predict with a model's published version (`shardwise predict MODEL FILE`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from shardwise.api import ShardedModel
from shardwise.brain.ensemble import aggregate
from shardwise.brain.versions import VersionManifest
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput, NotFound, reading
from shardwise.store.base import Store
from shardwise.store.layout import Layout

RESERVED = {"id", "label", "owner"}


def read_features(path: Path, dim: int) -> tuple[list[str], np.ndarray]:
    """Rows of feature vectors from CSV (numeric columns) or JSONL ('features'); ids optional."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    ids: list[str] = []
    rows: list[list[float]] = []
    with reading(str(path)):
        _read_rows(path, ids, rows)
    for n, r in enumerate(rows, 1):
        if len(r) != dim:
            raise InvalidInput(f"{path} row {n}: {len(r)} features, the model expects {dim}")
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:  # NaN, inf, or beyond float32: the model would answer NaN
        n, j = bad[0]
        raise InvalidInput(f"{path} row {n + 1}, feature {j + 1}: {rows[n][j]!r} is not a finite float32 number")
    return ids, x


def _read_rows(path: Path, ids: list[str], rows: list[list[float]]) -> None:
    if path.suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                feats = [float(x) for x in obj["features"]]
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                raise InvalidInput(f"{path} line {n}, field 'features': {type(e).__name__}: {str(e)[:80]}") from None
            ids.append(str(obj.get("id", n)))
            rows.append(feats)
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader, None)
                if header is None:
                    raise InvalidInput(f"{path}: empty file")
                cols = [i for i, h in enumerate(header) if h not in RESERVED]
                id_col = header.index("id") if "id" in header else None
                for n, row in enumerate(reader, 2):
                    try:
                        rows.append([float(row[i]) for i in cols])
                    except (ValueError, IndexError):
                        bad = next((header[i] for i in cols if i >= len(row) or not _num(row[i])), "?")
                        raise InvalidInput(f"{path} line {n}, field {bad!r}: not a number") from None
                    if id_col is not None and id_col >= len(row):
                        raise InvalidInput(f"{path} line {n}, field 'id': missing")
                    ids.append(row[id_col] if id_col is not None else str(n - 1))
            except csv.Error as e:
                raise InvalidInput(f"{path} line {reader.line_num}: malformed CSV: {e}") from None


def _num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def predict_file(store: Store, namespace: str, model: ShardedModel, path: Path) -> Iterator[dict[str, Any]]:
    from shardwise_trainer.train import predict_proba

    L = Layout(namespace)
    uid = model.metadata.uid or ""
    try:
        n = store.get_json(L.current(model.name, uid))["version"]
    except NotFound:
        raise NotFound(f"ShardedModel {model.name} has no published version yet") from None
    version = VersionManifest.from_dict(store.get_json(L.version(model.name, uid, n)))
    view = DatasetStore(store, L).view(model.spec.datasetRef, version.revision)
    shape = view.table.features.shape[1:]
    ids, X = read_features(path, int(np.prod(shape)))
    probs = aggregate(predict_proba(store, model.spec, version.finals(), X.reshape((-1, *shape)),
                                    len(view.table.class_names)), model.spec.aggregation)
    for i, p in zip(ids, probs):
        k = int(p.argmax())
        yield {"id": i, "prediction": view.table.class_names[k], "score": round(float(p[k]), 4), "version": n}
