"""The `shardwise` command line, run as separate processes the way a user runs it.

Each command is a new process, so these tests also show that state lives in the
store and nothing in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shardwise.store.local import LocalStore

pytestmark = pytest.mark.slow

DATASET = {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "digits"},
           "spec": {"source": {"builtin": "digits", "ownersPerSample": 20}}}


def model_doc(name="tiny", shards=2, slices=2, epochs=3, **extra):
    return {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": name},
            "spec": {"datasetRef": "digits", "shards": shards, "slices": slices,
                     "architecture": {"hiddenUnits": [16]},
                     "training": {"epochsPerSlice": epochs, "batchSize": 64, "learningRate": 0.01}, **extra}}


class Cli:
    def __init__(self, tmp: Path):
        self.store = tmp / "store"
        self.env = {**os.environ, "SHARDWISE_LOCK_DIR": str(tmp / "locks")}
        self.tmp = tmp

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shardwise.cli", "--store", str(self.store), "--parallel", "2", *args]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self.args(*args), capture_output=True, text=True, env=self.env, timeout=300)
        if ok:
            assert p.returncode == 0, f"{args}: {p.stderr}"
        return p

    def write(self, name: str, *docs: dict) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump_all(docs))
        return path


@pytest.fixture
def cli(tmp_path):
    return Cli(tmp_path)


def test_apply_get_describe_forget_predict_verify(cli):
    f = cli.write("m.yaml", DATASET, model_doc())
    out = cli("apply", "-f", str(f))
    assert "dataset.shardwise.io/digits created" in out.stdout
    assert "shardedmodel.shardwise.io/tiny created" in out.stdout
    assert "published version 1" in out.stderr  # progress lines

    table = cli("get", "shardedmodels").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "VERSION", "SHARDS", "ACCURACY", "AGE"]
    row = table[1].split()
    assert row[:5] == ["tiny", "Ready", "True", "1", "2/2"] and 0.5 < float(row[5]) <= 1.0

    desc = yaml.safe_load(cli("describe", "shardedmodel", "tiny").stdout)
    assert desc["status"]["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in desc["status"]["conditions"]}["Ready"] == "True"

    out = cli("forget", "--dataset", "digits", "--owner", "subject-0003", "--name", "gdpr-1")
    cert = yaml.safe_load(out.stdout)["certificate"]
    assert cert["samplesForgotten"] == 20 and cert["models"][0]["publishedVersion"] == 2
    assert cli("get", "forgetrequests").stdout.splitlines()[1].split()[:4] == ["gdpr-1", "Complete", "True", "digits"]

    # forgetting the same person again forgets nothing twice
    again = cli("forget", "--dataset", "digits", "--owner", "subject-0003", "--name", "gdpr-2")
    cert2 = yaml.safe_load(again.stdout)["certificate"]
    assert cert2["samplesForgotten"] == 0

    csv = cli.tmp / "x.csv"
    csv.write_text("id," + ",".join(f"p{i}" for i in range(64)) + "\n"
                   + "\n".join(f"r{j}," + ",".join(["0.5"] * 64) for j in range(3)) + "\n")
    rows = [json.loads(line) for line in cli("predict", "tiny", str(csv)).stdout.splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"] and all(r["version"] == 2 for r in rows)
    assert all(r["prediction"] in [str(i) for i in range(10)] for r in rows)

    assert "2 certificate(s) checked, 0 problem(s)" in cli("verify").stdout


def test_invalid_manifest_names_the_field_and_writes_nothing(cli):
    f = cli.write("bad.yaml", DATASET, model_doc(shards=0))
    p = cli("apply", "-f", str(f), ok=False)
    assert p.returncode == 1
    assert "spec.shards" in p.stderr and "greater than or equal to 1" in p.stderr
    assert "Traceback" not in p.stderr
    assert not cli.store.exists() or LocalStore(cli.store).list("default/resources/") == []

    f = cli.write("typo.yaml", {**model_doc(), "spec": {**model_doc()["spec"], "shard": 3}})
    p = cli("apply", "-f", str(f), ok=False)
    assert p.returncode == 1 and "spec.shard" in p.stderr and "Extra inputs" in p.stderr

    p = cli("apply", "-f", str(cli.tmp / "missing.yaml"), ok=False)
    assert p.returncode == 1 and "missing.yaml" in p.stderr


def test_unknown_ids_immutable_fields_and_missing_store(cli):
    cli("apply", "-f", str(cli.write("m.yaml", DATASET, model_doc())))
    p = cli("forget", "--dataset", "digits", "--ids", "digits-00001,no-such-sample", ok=False)
    assert p.returncode == 1 and "spec.sampleIds" in p.stderr and "'no-such-sample'" in p.stderr
    p = cli("forget", "--dataset", "digits", "--owner", "nobody", ok=False)
    assert p.returncode == 1 and "spec.ownerKey" in p.stderr
    p = cli("forget", "--dataset", "nope", "--owner", "x", ok=False)
    assert p.returncode == 1 and "Dataset default/nope not found" in p.stderr
    # nothing was tombstoned by the rejected requests
    assert cli("get", "datasets").stdout.splitlines()[1].split()[3] == "1"  # NAME PHASE READY REVISION

    p = cli("relabel", "--dataset", "digits", "--id", "digits-00001", "--label", "cat", ok=False)
    assert p.returncode == 1 and "--label: 'cat' is not a class" in p.stderr
    p = cli("relabel", "--dataset", "digits", "--id", "digits-00001", "--label", "3", "--by", "bob")
    assert "revision 2" in p.stderr and "tiny: version 2" in p.stdout

    p = cli("apply", "-f", str(cli.write("m2.yaml", model_doc(shards=3))), ok=False)
    assert p.returncode == 1 and "spec.shards is immutable" in p.stderr

    env = {k: v for k, v in cli.env.items() if not k.startswith(("SHARDWISE_S3", "AWS_"))}
    p = subprocess.run([sys.executable, "-m", "shardwise.cli", "--store", "s3://bucket/x", "get", "datasets"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "SHARDWISE_S3_ENDPOINT" in p.stderr and "Traceback" not in p.stderr


def test_a_corrupt_checkpoint_is_reported_and_rebuilt_from_the_previous_good_one(cli):
    import numpy as np

    from shardwise.brain.lineage import CheckpointRef
    from shardwise.datasets import DatasetStore
    from shardwise.store.layout import Layout

    cli("apply", "-f", str(cli.write("m.yaml", DATASET, model_doc(shards=1, slices=3))))
    store = LocalStore(cli.store)
    ckpt = next(k for k in store.list("default/models/") if k.endswith("slice-1/r000001/checkpoint"))
    path = cli.store / ckpt
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped byte
    path.write_bytes(bytes(data))
    # a sample of slice 2 rolls back to the checkpoint after slice 1: the corrupt one
    v = DatasetStore(store, Layout("default")).view("digits")
    victim = v.table.ids[np.flatnonzero(v.assignment(1, 3, 0, True).slice == 2)[0]]
    p = cli("forget", "--dataset", "digits", "--ids", str(victim), "--name", "f-corrupt")
    assert "corrupt" in p.stderr  # the trainer's complaint, with the key
    desc = yaml.safe_load(cli("describe", "shardedmodel", "tiny").stdout)
    st = desc["status"]
    cond = {c["type"]: c for c in st["conditions"]}["CheckpointCorrupt"]
    assert cond["status"] == "False" and cond["reason"] == "Rebuilt"
    assert ckpt in cond["message"] and "rebuilding from slice 1 (the previous good checkpoint)" in cond["message"]
    assert st["phase"] == "Ready" and st["publishedVersion"] == 2
    fr = yaml.safe_load(cli("describe", "forgetrequest", "f-corrupt").stdout)
    assert fr["status"]["phase"] == "Complete"
    # rebuilt from slice 1 on the good slice-0 checkpoint; the corrupt object is purged with version 1
    chain = [k for k in store.list("default/models/") if k.endswith("/checkpoint")]
    assert sorted(c.split("/", 4)[4] for c in chain) == [
        "shard-0/slice-0/r000001/checkpoint", "shard-0/slice-1/r000002/checkpoint",
        "shard-0/slice-2/r000002/checkpoint"]
    assert not store.exists(ckpt)
    # and the result is exact: the same as training from scratch on the new revision
    cli("apply", "-f", str(cli.write("s.yaml", model_doc(name="scratch", shards=1, slices=3))))
    def final(model: str) -> CheckpointRef:
        key = next(k for k in store.list(f"default/models/{model}/") if k.endswith("slice-2/r000002/meta.json"))
        return CheckpointRef.from_dict(store.get_json(key))
    assert final("tiny").weights_sha256 == final("scratch").weights_sha256


def test_forget_while_training_is_queued_then_done(cli):
    # long enough that the forget is filed while the shards train (a job starts warm and a shard of
    # 30 epochs trains in about a second)
    f = cli.write("m.yaml", DATASET, model_doc(shards=2, slices=2, epochs=300))
    bg = subprocess.Popen(cli.args("apply", "-f", str(f)), env=cli.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until training has started
            if "Training" in cli("get", "shardedmodels", ok=False).stdout:  # the store may not exist yet
                break
            time.sleep(0.3)
        else:
            pytest.fail("training never started")
        p = cli("forget", "--dataset", "digits", "--owner", "subject-0001", "--name", "early")
        assert "queued" in p.stderr
        out, err = bg.communicate(timeout=300)
        assert bg.returncode == 0, err
    finally:
        bg.kill()
    fr = yaml.safe_load(cli("describe", "forgetrequest", "early").stdout)
    assert fr["status"]["phase"] == "Complete" and fr["status"]["samples"] == 20
    m = yaml.safe_load(cli("describe", "shardedmodel", "tiny").stdout)
    assert m["status"]["datasetRevision"] == 2 and m["status"]["phase"] == "Ready"


def test_the_examples_apply_end_to_end(cli):
    examples = Path(__file__).resolve().parents[2] / "examples" / "digits"
    out = cli("apply", "-f", str(examples))
    assert "forgetrequest.shardwise.io/forget-subject-0042 created" in out.stdout
    fr = yaml.safe_load(cli("describe", "forgetrequest", "forget-subject-0042").stdout)
    assert fr["status"]["phase"] == "Complete" and fr["status"]["samples"] == 20
    (m,) = fr["status"]["certificate"]["models"]
    # applied together, the request was tombstoned before training began: the first
    # version never held the samples, so nothing had to be retrained or purged
    assert m["model"] == "digits-mlp" and m["versionsThatHeldSamples"] == [] and m["purgedCheckpoints"] == []
    row = cli("get", "shardedmodels").stdout.splitlines()[1].split()
    assert row[:5] == ["digits-mlp", "Ready", "True", "1", "4/4"] and float(row[5]) > 0.85
