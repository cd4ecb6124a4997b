"""SampleTable: the in-memory form of a Dataset's samples, whatever the source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shardwise.errors import InvalidInput


@dataclass(frozen=True)
class SampleTable:
    """Row i is one sample. Arrays are aligned and never reordered after ingest.

    ids:      str array (N,), unique
    labels:   int64 (N,), codes into class_names
    features: float32, (N, D) for vectors or (N, C, H, W) for images
    owners:   str array (N,), "" where the sample has no owner key
    class_names: label text of each code, in code order
    feature_names: the name of each feature column (CSV header, or JSONL `features[j]`); None for images
    """

    ids: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    owners: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None  # tabular sources: the column of each feature

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("labels", "features", "owners"):
            if len(getattr(self, name)) != n:
                raise InvalidInput(f"sample table: {name} has {len(getattr(self, name))} rows, ids has {n}")
        if len(set(self.ids.tolist())) != n:
            raise InvalidInput("sample table: sample ids are not unique")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise InvalidInput("sample table: a label code is outside class_names")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_image(self) -> bool:
        return self.features.ndim == 4
