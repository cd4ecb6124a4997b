"""Proof of purge: after a forget, a scan of the WHOLE store finds nothing derived from the samples.

Real training (torch trainer processes), a real forget, then `scan_for_forgotten` and
`shardwise verify --scan` over every object, on a folder and on a real S3 server
(SeaweedFS) with bucket versioning on, where every version of every object is read.
Negative controls put purged bytes back (and, on S3, leave an old version behind a
plain delete) to show that the scan fails, naming the key and the version.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest
from minio.versioningconfig import ENABLED, VersioningConfig

from shardwise.api import Experiment, ForgetRequest, ShardedModel
from shardwise.brain.versions import VersionManifest, job_name
from shardwise.cli import main
from shardwise.diagnosis.predictions import Predictions
from shardwise.diagnosis.redact import report_ids
from shardwise.local.registry import Registry
from shardwise.local.runner import LocalRunner
from shardwise.purge_scan import ScanReport, classify, scan_for_forgotten
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from shardwise.store.s3 import S3Store
from shardwise.verify import verify_ledger
from tests.helpers import dataset, experiment, forget, model

pytestmark = pytest.mark.slow  # one real train-and-forget per store (~25 s each), shared by the module
NS = "default"
L = Layout(NS)


@dataclass
class Purged:
    """A store where model m (2 shards x 2 slices) trained, then forgot one sample of shard 0, slice 1."""

    store: Store
    reg: Registry
    m: ShardedModel
    forgotten: list[str]
    purged_key: str  # the checkpoint the forget purged (shard 0, slice 1, revision 1)
    saved: dict[str, bytes] = field(default_factory=dict)  # bytes of purged objects, taken before the forget

    def scan(self, models: list[ShardedModel] | None = None) -> ScanReport:
        return scan_for_forgotten(self.store, NS, self.reg.list(ShardedModel) if models is None else models)


def _train_and_forget(store: Store, logs) -> Purged:
    reg = Registry(store, NS)
    runner = LocalRunner(store, NS, parallel=2, log=lambda m: None, log_dir=logs)
    reg.apply(dataset())
    reg.apply(model("m", shards=2, slices=2, epochs=1))
    # tested before the forget: one pinned to version 1 (purged by it), one following the model
    reg.apply(experiment("x-pinned", modelVersion=1, split="all"))
    reg.apply(experiment("x-latest"))
    runner.run(timeout=300)
    m = reg.require(ShardedModel, "m")
    uid = m.metadata.uid
    v = runner.view("digits")
    a = v.assignment(2, 2, 0, True)
    # a sample of shard 0, slice 1 that the pinned report names (its lists hold hundreds of rows)
    listed = report_ids(store.get_json(L.experiment_report("x-pinned")))
    here = v.table.ids[(a.shard == 0) & (a.slice == 1)].tolist()
    ids = [next((i for i in here if i in listed), here[0])]
    saved_report = store.get_bytes(L.experiment_report("x-pinned"))
    v1 = VersionManifest.from_dict(store.get_json(L.version("m", uid, 1)))
    purged = v1.chains[0][1].key
    # what the first training job of shard 0 wrote as it finished (job records go once published):
    # its chain names the checkpoint the forget purges
    job = {"chain": [r.to_dict() for r in v1.chains[0]], "computeSeconds": 0.1, "slicesDone": 2}
    saved = {"version": store.get_bytes(L.version("m", uid, 1)), "checkpoint": store.get_bytes(purged),
             "job_key": L.job_status("m", uid, job_name("m", 0, 1, 0)).encode(), "job": json.dumps(job).encode(),
             "meta": store.get_bytes(L.checkpoint_meta(purged)), "payload": store.get_bytes(v.payload_key),
             "payload_key": v.payload_key.encode(), "report": saved_report,
             "predictions": store.get_bytes(L.experiment_predictions("x-pinned"))}
    reg.apply(forget("f1", ids=ids))
    runner.run(timeout=300)
    assert reg.require(ForgetRequest, "f1").status.phase == "Complete"
    return Purged(store, reg, reg.require(ShardedModel, "m"), ids, purged, saved)


@pytest.fixture(scope="module", params=["local", "s3-versioned"])
def purged(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("purge")
    if request.param == "local":
        yield _train_and_forget(LocalStore(tmp / "store"), tmp / "logs")
        return
    server = request.getfixturevalue("seaweedfs")
    client = server.client()
    bucket = f"pv-{uuid.uuid4().hex[:16]}"
    client.make_bucket(bucket)
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    store = S3Store(client, bucket, "root")
    store.ensure_bucket()
    with pytest.MonkeyPatch.context() as mp:  # the trainer processes open the store from these
        mp.setenv("SHARDWISE_S3_ENDPOINT", server.endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        yield _train_and_forget(store, tmp / "logs")


def test_a_complete_forget_leaves_nothing_in_the_whole_store(purged):
    report = purged.scan()
    assert report.findings == [] and report.clean
    assert report.forgotten == {"digits": 1}
    assert report.retained == [L.resource("forgetrequests", "f1")]  # it names the id it forgot, by design
    assert report.unchecked == []  # every object was of a known kind, so every one was judged
    # what the scan walked: models, datasets, resources, ledger (36 keys in a 2x2 run)
    assert report.objects >= 25
    kinds = {classify(k[len(NS) + 1:])[0] for k in purged.store.list(f"{NS}/")}
    assert {"checkpoint", "meta", "version", "payload", "record"} <= kinds
    assert not purged.store.exists(purged.purged_key)
    if isinstance(purged.store, S3Store):
        # every version was judged, and the store kept one per key although many keys were
        # written more than once (resource statuses, current.json, payload.json...)
        assert report.versions == report.objects and report.delete_markers == 0
        assert len(purged.store.list_versions(f"{NS}/")) == report.objects


def test_a_re_uploaded_checkpoint_is_found_by_key_even_without_its_lineage(purged):
    store, key = purged.store, purged.purged_key
    store.put_verified(key, purged.saved["checkpoint"])
    try:
        (f,) = purged.scan().findings
        assert (f.key, f.kind) == (key, "checkpoint")
        assert "forgotten at revision(s) 2" in f.reason and "no meta.json" in f.reason
        (problem,) = verify_ledger(store, NS)[0]
        assert f"purged checkpoint {key} is still in the store" in problem
        store.put_bytes(L.checkpoint_meta(key), purged.saved["meta"])
        found = {(f.key, f.kind) for f in purged.scan().findings}
        assert found == {(key, "checkpoint"), (L.checkpoint_meta(key), "meta")}
    finally:
        store.delete(key)
        store.delete(L.checkpoint_meta(key))
    assert purged.scan().clean


def test_a_re_uploaded_version_manifest_and_payload_are_found(purged):
    store, uid = purged.store, purged.m.metadata.uid
    pkey = purged.saved["payload_key"].decode()
    assert not store.exists(pkey)  # the forget wrote a payload without the row and deleted this one
    store.put_bytes(L.version("m", uid, 1), purged.saved["version"])
    store.put_verified(pkey, purged.saved["payload"])
    try:
        by_kind = {f.kind: f for f in purged.scan().findings}
        assert set(by_kind) == {"version", "payload"}
        assert by_kind["version"].key == L.version("m", uid, 1) and purged.purged_key in by_kind["version"].reason
        assert by_kind["payload"].key == pkey and purged.forgotten[0] in by_kind["payload"].reason
    finally:
        store.delete(L.version("m", uid, 1))
        store.delete(pkey)
    assert purged.scan().clean


def test_a_re_uploaded_job_record_naming_a_purged_checkpoint_is_found(purged):
    store, key = purged.store, purged.saved["job_key"].decode()
    assert not store.exists(key)  # job records are history once their version is published
    store.put_bytes(key, purged.saved["job"])
    try:
        (f,) = purged.scan().findings
        assert (f.key, f.kind) == (key, "job")
        assert "job record names 1 checkpoint(s)" in f.reason and purged.purged_key in f.reason
    finally:
        store.delete(key)
    assert purged.scan().clean


def test_a_model_with_no_known_spec_fails_closed(purged):
    # A deleted ShardedModel is still placed in shards: the Dataset keeps a record of every model trained
    # on it (with its spec), so its retained objects are judged like a live model's.
    record = L.dataset_trained("digits", "m", purged.m.metadata.uid)
    assert purged.scan(models=[]).clean
    # Without that record (a store written before it existed) and without the evaluation requests that
    # also carry the spec, nothing places them: everything trained before the forget is reported, not passed.
    uid = purged.m.metadata.uid
    spec_sources = [record] + [k for k in purged.store.list(L.model("m", uid) + "/")
                               if (p := L.parse(k)) is not None and p.kind == "evaluation-request"]
    assert len(spec_sources) > 1  # the model's versions were evaluated through their requests
    saved = {k: purged.store.get_bytes(k) for k in spec_sources}
    for k in spec_sources:
        purged.store.delete(k)
    try:
        report = purged.scan(models=[])
    finally:
        for k, data in saved.items():
            purged.store.put_bytes(k, data)
    keys = {f.key for f in report.findings}
    assert report.findings and all("no ShardedModel spec" in f.reason for f in report.findings)
    assert all("/r000001/" in k or "/versions/" in k for k in keys)
    assert not any("/r000002/" in k for k in keys)  # retrained after the forget: provably clean


def test_experiment_predictions_with_a_forgotten_row_are_found(purged):
    key = L.experiment_predictions("x1")
    purged.store.put_bytes(key, _npz_ids(["kept-id", purged.forgotten[0]]))
    try:
        (f,) = purged.scan().findings
        assert (f.key, f.kind) == (key, "predictions") and purged.forgotten[0] in f.reason
    finally:
        purged.store.delete(key)


def test_experiment_runs_lose_the_forgotten_rows_and_a_pinned_one_keeps_its_report(purged):
    store, gone = purged.store, purged.forgotten[0]
    assert gone in report_ids(json.loads(purged.saved["report"]))  # the report named it before
    report = store.get_json(L.experiment_report("x-pinned"))
    assert gone not in report_ids(report) and report["redactedSamples"] >= 1 and report["version"] == 1
    preds = Predictions.from_npz(store.get_verified(L.experiment_predictions("x-pinned")))
    before = Predictions.from_npz(purged.saved["predictions"])
    assert gone not in preds.ids and len(preds) == len(before) - 1
    x = purged.reg.require(Experiment, "x-pinned")  # its version is purged; the report made on it stands
    assert x.status.phase == "Succeeded" and x.status.modelVersion == 1
    latest = purged.reg.require(Experiment, "x-latest")  # re-tested on the version that forgot
    assert latest.status.phase == "Succeeded" and latest.status.modelVersion == purged.m.status.publishedVersion
    # negative control: the report as it was before the purge is found
    store.put_json(L.experiment_report("x-pinned"), json.loads(purged.saved["report"]))
    try:
        (f,) = purged.scan().findings
        assert (f.key, f.kind) == (L.experiment_report("x-pinned"), "report") and gone in f.reason
    finally:
        store.put_json(L.experiment_report("x-pinned"), report)
    assert purged.scan().clean


def test_verify_scan_command_fails_with_the_key_listed(purged, capsys):
    store = purged.store
    argv = ["--store", store.uri.removeprefix("file://"), "verify", "--scan"]
    assert main(argv) == 0
    assert "0 finding(s)" in capsys.readouterr().out
    store.put_verified(purged.purged_key, purged.saved["checkpoint"])
    try:
        assert main(argv) == 1
        out = capsys.readouterr()
        assert f"FAIL {purged.purged_key}" in out.err and "1 finding(s)" in out.out
    finally:
        store.delete(purged.purged_key)


# -- S3 versioning: a plain DELETE only hides a version; the scan reads every version --------------
def test_an_old_version_behind_a_plain_delete_is_found_with_its_version_id(purged):
    store = purged.store
    if not isinstance(store, S3Store):
        pytest.skip("object versions exist only on S3")
    key = purged.purged_key
    store.put_verified(key, purged.saved["checkpoint"])
    (ver,) = [v.version_id for v in store.list_versions(key)]
    # What a store without the versioned delete did: one DELETE, no version id -> a delete marker
    store.client.remove_object(store.bucket, store.prefix + key)
    try:
        assert not store.exists(key) and store.list(key) == []  # invisible to a plain listing...
        report = purged.scan()
        (f,) = report.findings  # ...but the scan reads every version
        assert (f.key, f.version, f.kind) == (key, ver, "checkpoint") and f"(version {ver})" in str(f)
        assert report.delete_markers == 1
        # the ledger check looks behind delete markers too
        problems, _ = verify_ledger(store, NS)
        assert problems == [f"{NS}/ledger/000001-f1.json: purged checkpoint {key} is still in the store "
                            f"(1 stored version(s): {ver})"]
    finally:
        store.delete(key)  # every version and the delete marker
    assert store.list_versions(key) == [] and purged.scan().clean


def test_an_overwrite_leaves_no_old_version_to_find(purged):
    store = purged.store
    if not isinstance(store, S3Store):
        pytest.skip("object versions exist only on S3")
    key = L.experiment_predictions("x2")
    store.put_bytes(key, _npz_ids([purged.forgotten[0]]))  # an old experiment's rows, forgotten since
    store.put_bytes(key, _npz_ids(["kept-id"]))  # re-run: the store removes the replaced version
    try:
        assert len(store.list_versions(key)) == 1
        assert purged.scan().clean
    finally:
        store.delete(key)


def test_a_leftover_temp_file_of_a_folder_store_is_reported(purged):
    if not isinstance(purged.store, LocalStore):
        pytest.skip("temp files exist only in a folder store")
    folder = purged.store.root / purged.purged_key.rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".tmp-abc123"
    tmp.write_bytes(purged.saved["checkpoint"][:100])  # a crash mid-write of the checkpoint
    try:
        (f,) = purged.scan().findings
        assert f.kind == "partial-write" and f.key.endswith(".tmp-abc123")
    finally:
        os.unlink(tmp)
        purged.store.delete(purged.purged_key)  # drops the folders left empty


def _npz_ids(ids: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.array(ids))
    return buf.getvalue()
