"""The control plane/trainer boundary is typed (api/jobs.py): a request that does not fit the trainer's
model fails the job at once (exit 2, never retried) naming the field, and nothing is trained."""

from __future__ import annotations

import pytest

from shardwise.api.jobs import EvaluationRequest, JobStatus, TrainingRequest
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from shardwise_trainer.__main__ import main

SPEC = {"datasetRef": "d", "shards": 2, "slices": 3}
GOOD = {"job": "m-s0-r1-f0", "namespace": "default", "model": "m", "uid": "u", "spec": SPEC, "dataset": "d",
        "shard": 0, "fromSlice": 0, "revision": 1}


@pytest.mark.parametrize("change, field", [
    ({"fromSlice": None}, "fromSlice"),
    ({"revision": 0}, "revision"),
    ({"purpose": "finetune"}, "purpose"),
    ({"spec": {**SPEC, "shards": 0}}, "spec.shards"),
    ({"shardz": 1}, "shardz"),
])
def test_a_training_request_that_does_not_fit_fails_at_once_naming_the_field(tmp_path, capsys, change, field):
    store = LocalStore(tmp_path / "store")
    key = Layout("default").job_request("m", "u", "m-s0-r1-f0")
    store.put_json(key, {k: v for k, v in {**GOOD, **change}.items() if v is not None})
    assert main(["train", "--store", str(tmp_path / "store"), "--request", key]) == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and field in err, err
    assert not store.list("default/models/m/u/shard-")  # nothing trained


def test_an_evaluation_request_that_does_not_fit_fails_at_once_naming_the_field(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    key = Layout("default").evaluation_request("m", "u", 1)
    store.put_json(key, {"namespace": "default", "model": "m", "uid": "u", "version": 1, "spec": SPEC,
                         "split": "validation"})
    assert main(["evaluate", "--store", str(tmp_path / "store"), "--request", key]) == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and "split" in err, err


def test_the_contract_round_trips_and_a_status_keeps_only_what_was_said():
    req = TrainingRequest.model_validate(GOOD)
    assert TrainingRequest.model_validate(req.model_dump(mode="json")) == req and req.purpose == "train"
    assert JobStatus(state="running", slicesDone=2).to_doc() == {"state": "running", "slicesDone": 2}
    ev = EvaluationRequest.model_validate({"namespace": "n", "model": "m", "uid": "u", "version": 3, "spec": SPEC})
    assert ev.split == "test" and ev.baseline is None
