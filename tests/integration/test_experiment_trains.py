"""An Experiment that trains its own ShardedModel (spec.train), in the local body."""

from __future__ import annotations

import pytest

from shardwise.api import Experiment, ShardedModel
from shardwise.api.experiment import EXPERIMENT_LABEL
from shardwise.errors import InvalidInput
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from tests.helpers import dataset, model

NS = "default"
TRAIN = {"shards": 2, "slices": 1, "architecture": {"hiddenUnits": [16]}, "training": {"epochsPerSlice": 1}}


def trains(name: str, **train) -> Experiment:
    return Experiment.model_validate({"kind": "Experiment", "metadata": {"name": name},
                                     "spec": {"datasetRef": "digits", "train": TRAIN | train}})


def test_an_experiment_trains_its_model_tests_it_and_takes_it_when_deleted(local_store):
    reg = Registry(local_store, NS)
    reg.apply(dataset())
    reg.apply(trains("quick"))
    LocalRunner(local_store, NS, parallel=2, log=lambda m: None).run(timeout=300)
    x = reg.require(Experiment, "quick")
    assert x.status.phase == "Succeeded" and x.status.model == "quick" and x.status.modelVersion == 1
    m = reg.require(ShardedModel, "quick")
    assert m.metadata.labels == {EXPERIMENT_LABEL: "quick"} and (m.spec.shards, m.spec.slices) == (2, 1)
    assert m.status.publishedVersion == 1 and x.status.accuracy == pytest.approx(m.status.accuracy)
    # spec.train is immutable; deleting the Experiment deletes its model (the API server's GC in a cluster)
    with pytest.raises(InvalidInput, match="spec.train is immutable"):
        reg.apply(trains("quick", shards=3))
    reg.delete(Experiment, "quick")
    assert reg.get(ShardedModel, "quick") is None


def test_a_model_of_that_name_that_is_not_the_experiments_is_left_alone(local_store):
    reg = Registry(local_store, NS)
    reg.apply(dataset())
    reg.apply(model("taken", shards=1, slices=1, epochs=1))
    reg.apply(trains("taken"))
    LocalRunner(local_store, NS, parallel=1, log=lambda m: None).run(timeout=300)
    x = reg.require(Experiment, "taken")
    assert x.status.phase == "Failed" and "spec.train" in x.status.condition("Ready").message
    assert reg.require(ShardedModel, "taken").metadata.labels == {}  # untouched
    reg.delete(Experiment, "taken")
    assert reg.get(ShardedModel, "taken") is not None  # not the Experiment's: not deleted with it
