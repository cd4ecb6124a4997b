"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

from shardwise.api import Dataset, Experiment, ForgetRequest, ShardedModel


def dataset(name: str = "digits", owners: int = 20, **spec: Any) -> Dataset:
    return Dataset.model_validate({
        "kind": "Dataset", "metadata": {"name": name},
        "spec": {"source": {"builtin": "digits", "ownersPerSample": owners}, **spec},
    })


def model(name: str = "m", dataset: str = "digits", shards: int = 3, slices: int = 3, epochs: int = 2,
          **spec: Any) -> ShardedModel:
    return ShardedModel.model_validate({
        "kind": "ShardedModel", "metadata": {"name": name},
        "spec": {"datasetRef": dataset, "shards": shards, "slices": slices,
                 "architecture": {"kind": "mlp", "hiddenUnits": [32]},
                 "training": {"epochsPerSlice": epochs, "batchSize": 64, "learningRate": 0.01}, **spec},
    })


def forget(name: str, dataset: str = "digits", ids: list[str] | None = None, owner: str | None = None) -> ForgetRequest:
    spec: dict[str, Any] = {"datasetRef": dataset}
    if ids is not None:
        spec["sampleIds"] = ids
    if owner is not None:
        spec["ownerKey"] = owner
    return ForgetRequest.model_validate({"kind": "ForgetRequest", "metadata": {"name": name}, "spec": spec})


def experiment(name: str, model: str = "m", dataset: str = "digits", **spec: Any) -> Experiment:
    return Experiment.model_validate({"kind": "Experiment", "metadata": {"name": name},
                                     "spec": {"modelRef": model, "datasetRef": dataset, **spec}})
