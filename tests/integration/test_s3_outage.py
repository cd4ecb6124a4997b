"""The S3 server stops in the middle of a training run and comes back: the run completes.

A real SeaweedFS (the session fixture) is stopped while `shardwise apply` trains against
it — the reconciler and its trainer processes all talk S3 — and restarted a few seconds
later. Retries with backoff bridge the outage (and say so on stderr) in the reconciler and in
the trainers alike: no trainer is restarted and each slice is trained once (the fault-point
trace counts them). The model is published and every checkpoint it names verifies against the
sha256 its version records.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from shardwise.brain.versions import VersionManifest
from shardwise.store.s3 import S3Store

pytestmark = pytest.mark.slow

DOCS = [
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "digits"},
     "spec": {"source": {"builtin": "digits"}}},
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": "m"},
     "spec": {"datasetRef": "digits", "shards": 2, "slices": 4, "architecture": {"hiddenUnits": [16]},
              "training": {"epochsPerSlice": 6, "batchSize": 32, "learningRate": 0.01}}},
]


def test_a_run_survives_the_s3_server_going_away_and_coming_back(seaweedfs, tmp_path):
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    S3Store(seaweedfs.client(), bucket, "root").ensure_bucket()
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(DOCS))
    env = {**os.environ, "SHARDWISE_S3_ENDPOINT": f"http://{seaweedfs.endpoint}",
           "AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
           "SHARDWISE_LOCK_DIR": str(tmp_path / "locks"), "SHARDWISE_FAULT_TRACE": str(tmp_path / "trace")}
    env = {k: v for k, v in env.items() if k not in ("SHARDWISE_FAULT", "SHARDWISE_FAULT_ONCE")}
    run = subprocess.Popen([sys.executable, "-m", "shardwise.cli", "--store", f"s3://{bucket}/root", "--parallel", "2",
                            "apply", "-f", str(tmp_path / "all.yaml")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = S3Store(seaweedfs.client(), bucket, "root")
    try:
        deadline = time.time() + 120
        while not any(k.endswith("/checkpoint") for k in watcher.list("default/models/")):  # training is under way
            assert run.poll() is None, run.communicate()[1]
            assert time.time() < deadline, "training never wrote a checkpoint"
            time.sleep(0.2)
        seaweedfs.stop()
        time.sleep(3.0)  # the trainers and the reconciler hit a dead endpoint meanwhile
        assert run.poll() is None, "the run gave up while the server was down"
        seaweedfs.start()
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        if seaweedfs.process.poll() is not None:
            seaweedfs.start()
    assert run.returncode == 0, err
    # the outage was bridged by retries with backoff, and the user was told
    assert re.search(r"failed \(.*\): retry \d+ of 7 in", err), err[-3000:]
    # ... in the trainers too: none was restarted, and each of the 2 x 4 slices was trained once
    assert "starting it again" not in err, err[-3000:]
    reached = (tmp_path / "trace").read_text().split()
    assert reached.count("trainer.after-slice") == 8, reached
    uid = next(iter(watcher.list("default/models/m/"))).split("/")[3]
    current = watcher.get_json(f"default/models/m/{uid}/current.json")["version"]
    version = VersionManifest.from_dict(watcher.get_json(f"default/models/m/{uid}/versions/{current:06d}.json"))
    assert current == 1 and len(version.chains) == 2 and all(len(c) == 4 for c in version.chains)
    for chain in version.chains:
        for ref in chain:
            watcher.get_verified(ref.key, ref.sha256)  # nothing lost, nothing half-written
