"""Correction objects on the local body: `shardwise apply -f` a label fix or a drop, applied by the
reconcile pass as one Dataset revision recording its author and the object, retrained exactly as
`shardwise relabel` retrains; applied once even when the status write is lost; refused naming the
field. The same objects in a cluster (RBAC, the author policy, the operator): tests/cluster."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from shardwise.api import Correction, ShardedModel
from shardwise.cli import main
from shardwise.control import StoreControl
from shardwise.local.registry import Registry
from shardwise.store.layout import Layout
from shardwise.store.local import LocalStore
from tests.integration.exactness import published

NS = "default"
MANIFESTS = [
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "digits"},
     "spec": {"source": {"builtin": "digits", "ownersPerSample": 20}}},
    {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": "m"},
     "spec": {"datasetRef": "digits", "shards": 2, "slices": 2, "architecture": {"kind": "mlp", "hiddenUnits": [16]},
              "training": {"epochsPerSlice": 2, "batchSize": 32}}},
]


def correction(name: str, **spec) -> dict:
    return {"apiVersion": "shardwise.io/v1alpha1", "kind": "Correction", "metadata": {"name": name},
            "spec": {"datasetRef": "digits", "author": "alice", **spec}}


def write(path, docs: list[dict]) -> str:
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def fixes(store_dir) -> dict[str, str]:
    """Two training samples of the two shards' slice 1, each given another label."""
    v = StoreControl(LocalStore(store_dir), NS).view("digits")
    a = v.assignment(2, 2, 0, True)
    out = {}
    for shard in (0, 1):
        i = int(np.flatnonzero(v.train & (a.shard == shard) & (a.slice == 1))[0])
        old = v.table.class_names[int(v.state.labels[i])]
        out[str(v.table.ids[i])] = "7" if old != "7" else "1"
    return out


@pytest.mark.slow
def test_an_applied_correction_retrains_exactly_as_relabel_does(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    base = write(tmp_path / "base.yaml", MANIFESTS)
    for store in (a, b):
        assert main(["--store", str(store), "apply", "-f", base]) == 0
    labels = fixes(a)
    # a: the CLI's relabel; b: the same fixes as a Correction object
    assert main(["--store", str(a), "relabel", "--dataset", "digits", "--by", "alice",
                 *sum((["--id", i, "--label", lab] for i, lab in labels.items()), [])]) == 0
    fix = correction("fix-1", relabel=[{"id": i, "label": lab} for i, lab in labels.items()])
    assert main(["--store", str(b), "apply", "-f", write(tmp_path / "fix.yaml", [fix])]) == 0
    reg = Registry(LocalStore(b), NS)
    st = reg.require(Correction, "fix-1").status
    assert st.phase == "Applied" and st.datasetRevision == 2 and st.samples == 2
    assert "relabel of 2 sample(s) by alice: Dataset digits revision 2" in st.message
    doc = LocalStore(b).get_json(Layout(NS).dataset_revision("digits", 2))["change"]
    assert doc["by"] == "alice" and doc["correction"] == {"name": "fix-1", "uid": reg.require(Correction, "fix-1")
                                                          .metadata.uid}
    ma, mb = (Registry(LocalStore(s), NS).require(ShardedModel, "m") for s in (a, b))
    va, vb = published(LocalStore(a), ma), published(LocalStore(b), mb)
    assert va.version == vb.version == 2 and va.revision == vb.revision == 2
    assert [[r.weights_sha256 for r in c] for c in va.chains] == [[r.weights_sha256 for r in c] for c in vb.chains]
    # applied once: a later pass (another apply) leaves it and the Dataset as they are
    assert main(["--store", str(b), "reconcile"]) == 0
    assert StoreControl(LocalStore(b), NS).datasets.current_revision("digits") == 2


def test_a_correction_is_applied_once_even_if_its_status_was_lost_and_refused_naming_the_field(tmp_path):
    store = LocalStore(tmp_path / "s")
    reg = Registry(store, NS)
    control = StoreControl(store, NS)
    reg.apply(Correction.model_validate(correction("early", drop=["digits-00001"])))
    st = control.apply_correction(reg.require(Correction, "early"))
    assert st.phase == "Pending" and st.condition("Ready").reason == "DatasetNotReady"  # no Dataset yet
    assert main(["--store", str(tmp_path / "s"), "apply", "--no-wait", "-f",
                 write(tmp_path / "d.yaml", MANIFESTS[:1])]) == 0
    from shardwise.api import Dataset
    reg.put_status(Dataset.model_validate({**MANIFESTS[0], "status": control.reconcile_dataset(
        reg.require(Dataset, "digits"))}))
    c = reg.require(Correction, "early")
    first = control.apply_correction(c)
    assert first.phase == "Applied" and first.datasetRevision == 2
    again = control.apply_correction(c)  # as if the status write had been lost: the same revision, no new one
    assert again.datasetRevision == 2 and control.datasets.current_revision("digits") == 2
    c.status = first
    assert control.apply_correction(c) is None  # Applied: nothing more to do

    for name, spec, words in [
        ("unknown", {"relabel": [{"id": "no-such", "label": "1"}]}, "spec.relabel: 1 id(s) not in Dataset 'digits'"),
        ("notaclass", {"relabel": [{"id": "digits-00002", "label": "cat"}]}, "spec.relabel: 'cat' is not a class"),
        ("gone", {"drop": ["digits-00001"]}, "spec.drop: already dropped or forgotten: digits-00001"),
    ]:
        reg.apply(Correction.model_validate(correction(name, **spec)))
        st = control.apply_correction(reg.require(Correction, name))
        assert st.phase == "Failed" and words in st.message, st.message
    assert control.datasets.current_revision("digits") == 2  # nothing written by the refusals


@pytest.mark.parametrize("argv, words", [
    (["--cluster", "--store", "s3://b", "apply", "-f", "x.yaml"], "works on the local body only"),
    (["--cluster", "--store", "s3://b", "delete", "sm", "m"], "works on the local body only"),
    (["--cluster", "--store", "s3://b", "forget", "--dataset", "d", "--owner", "o"], "works on the local body only"),
    (["--cluster", "--store", "./folder", "get", "sm"], "--store: with --cluster name the tenant's store"),
])
def test_the_cli_in_a_cluster_says_what_it_serves(argv, words, capsys):
    assert main(argv) == 1
    assert words in capsys.readouterr().err


def test_a_missing_kube_context_is_named(tmp_path, monkeypatch, capsys, seaweedfs):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    seaweedfs.client().make_bucket("ctx-test")
    assert main(["--context", "nope", "--store", "s3://ctx-test", "get", "sm"]) == 1
    assert "--cluster: cannot load kube context 'nope'" in capsys.readouterr().err
