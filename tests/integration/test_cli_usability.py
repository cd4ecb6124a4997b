"""The command line's small courtesies: an empty manifest is named, a mistyped store is not
created by a command that only reads, kubectl-like short names (listed in --help), and predict
matching a CSV's columns to the model's features by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import numpy as np
import pytest
import yaml

from shardwise.api.crds import render_crds
from shardwise.cli import main
from tests.integration.test_cli import DATASET, Cli, model_doc


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse: --help, usage errors
        rc = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(autouse=True)
def _locks(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDWISE_LOCK_DIR", str(tmp_path / "locks"))


# -- apply -f an empty file --------------------------------------------------------------------
@pytest.mark.parametrize("text, why", [
    ("", "it is empty"),
    ("\n  \n", "it is empty"),
    ("# a comment\n---\n# another\n---\n", "only comments, '---' or empty documents"),
    ("---\n~\n", "only comments, '---' or empty documents"),
])
def test_apply_of_a_file_with_no_resources_names_the_file_and_writes_nothing(tmp_path, capsys, text, why):
    store, path = tmp_path / "store", tmp_path / "empty.yaml"
    path.write_text(text)
    rc, out, err = run(capsys, "--store", str(store), "apply", "-f", str(path))
    assert rc == 1 and not out
    assert err == f"error: {path}: no resources in the file ({why})\n"
    assert not store.exists()


def test_apply_of_a_folder_with_no_resources_is_refused_but_an_empty_file_beside_others_is_fine(tmp_path, capsys):
    store, folder = tmp_path / "store", tmp_path / "manifests"
    folder.mkdir()
    (folder / "00-empty.yaml").write_text("# nothing yet\n")
    rc, _, err = run(capsys, "--store", str(store), "apply", "-f", str(folder))
    assert rc == 1 and f"-f {folder}: no resources" in err and not store.exists()
    (folder / "01-dataset.yaml").write_text(yaml.safe_dump(DATASET))
    rc, out, err = run(capsys, "--store", str(store), "apply", "--no-wait", "-f", str(folder))
    assert rc == 0 and out == "dataset.shardwise.io/digits created\n", err


# -- a store that does not exist -----------------------------------------------------------------
READERS = [
    ["get", "shardedmodels"], ["get", "datasets", "-o", "yaml"], ["describe", "shardedmodel", "m"],
    ["delete", "dataset", "d"],
    ["verify"], ["verify", "--scan"], ["predict", "m", "rows.csv"], ["report", "e", "--out", "REPORT"],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_command_that_reads_does_not_create_a_missing_store(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "r.html") if a == "REPORT" else a for a in argv]
    rc, out, err = run(capsys, "--store", "./misspelt", *argv)
    assert rc == 1 and not out
    assert err.startswith("error: store folder ./misspelt does not exist: check --store (or $SHARDWISE_STORE)"), err
    assert not (tmp_path / "misspelt").exists() and not (tmp_path / "r.html").exists()


def test_the_store_from_the_environment_is_named_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHARDWISE_STORE", str(tmp_path / "typo"))
    rc, _, err = run(capsys, "get", "datasets")
    assert rc == 1 and f"store folder {tmp_path / 'typo'} does not exist" in err and "SHARDWISE_STORE" in err
    assert not (tmp_path / "typo").exists()


def test_ui_does_not_create_a_missing_store(tmp_path):
    # a process: were the store created, the server would start and serve until killed
    p = subprocess.run([sys.executable, "-m", "shardwise.cli", "--store", str(tmp_path / "nope"), "ui", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and f"store folder {tmp_path / 'nope'} does not exist" in p.stderr
    assert not (tmp_path / "nope").exists()


def test_a_command_that_writes_creates_the_store(tmp_path, capsys):
    rc, _, err = run(capsys, "--store", str(tmp_path / "a"), "reconcile")
    assert rc == 0 and (tmp_path / "a").is_dir(), err
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(DATASET))
    rc, _, err = run(capsys, "--store", str(tmp_path / "b"), "apply", "--no-wait", "-f", str(f))
    assert rc == 0 and (tmp_path / "b" / "default").is_dir(), err
    # and once made, the commands that read use it
    rc, out, err = run(capsys, "--store", str(tmp_path / "b"), "get", "datasets")
    assert rc == 0 and out.splitlines()[1].split()[0] == "digits", err


def test_a_file_where_the_store_folder_should_be_is_named(tmp_path, capsys):
    (tmp_path / "store").write_text("not a folder")
    rc, _, err = run(capsys, "--store", str(tmp_path / "store"), "get", "shardedmodels")
    assert rc == 1 and f"store folder {tmp_path / 'store'} is not a folder" in err


def test_a_command_that_reads_does_not_create_a_missing_bucket(seaweedfs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHARDWISE_S3_ENDPOINT", seaweedfs.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    client = seaweedfs.client()
    for argv in (["get", "shardedmodels"], ["verify"]):
        rc, out, err = run(capsys, "--store", f"s3://{bucket}/team", *argv)
        assert rc == 1 and not out and f"S3 bucket {bucket!r}" in err and "does not exist" in err, err
        assert "--store" in err and not client.bucket_exists(bucket)
    rc, _, err = run(capsys, "--store", f"s3://{bucket}/team", "reconcile")
    assert rc == 0 and client.bucket_exists(bucket), err
    rc, _, err = run(capsys, "--store", f"s3://{bucket}/team", "get", "shardedmodels")
    assert rc == 0 and "No shardedmodels found" in err


# -- kinds: short names and --help ------------------------------------------------------------------
def test_kubectl_like_short_names(tmp_path, capsys):
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump_all([DATASET, model_doc()]))
    store = str(tmp_path / "store")
    assert run(capsys, "--store", store, "apply", "--no-wait", "-f", str(f))[0] == 0
    for word, first in (("sm", "tiny"), ("SM", "tiny"), ("ds", "digits"), ("swds", "digits")):
        rc, out, err = run(capsys, "--store", store, "get", word)
        assert rc == 0 and out.splitlines()[1].split()[0] == first, (word, err)
    for word in ("fr", "exp"):
        rc, out, err = run(capsys, "--store", store, "get", word)
        assert rc == 0 and "found in namespace default" in err, (word, err)
    rc, out, _ = run(capsys, "--store", store, "describe", "sm", "tiny")
    assert rc == 0 and yaml.safe_load(out)["kind"] == "ShardedModel"
    rc, out, _ = run(capsys, "--store", store, "delete", "sm", "tiny")
    assert rc == 0 and out == "shardedmodel.shardwise.io/tiny deleted\n"
    rc, _, err = run(capsys, "--store", store, "get", "dss")
    assert rc == 1 and "unknown kind 'dss'" in err


def test_the_cli_short_names_stay_out_of_the_crds():
    # in a cluster `ds` is DaemonSet's; the CRDs keep only the sw-prefixed short names
    crds = [yaml.safe_load(text) for text in render_crds().values()]
    short = {c["spec"]["names"]["kind"]: c["spec"]["names"]["shortNames"] for c in crds}
    assert short == {"Dataset": ["swds"], "ShardedModel": ["swm"], "ForgetRequest": ["swfr"], "Experiment": ["swx"],
                     "Correction": ["swfix"]}


@pytest.mark.parametrize("cmd", ["get", "describe", "delete"])
def test_help_lists_every_kind_with_its_names(capsys, cmd):
    rc, out, _ = run(capsys, cmd, "--help")
    assert rc == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.startswith("  ")
             and line.split()[0] in {"datasets", "shardedmodels", "forgetrequests", "experiments"}}
    assert lines == {"datasets": "dataset, swds, ds", "shardedmodels": "shardedmodel, swm, sm",
                     "forgetrequests": "forgetrequest, swfr, fr", "experiments": "experiment, swx, exp"}


# -- predict: features matched by name ---------------------------------------------------------------
def digits_rows(n: int = 12) -> tuple[list[str], np.ndarray]:
    from sklearn.datasets import load_digits

    x = load_digits().data[:n]
    return [f"row-{i}" for i in range(n)], x


def write_csv(path, header: list[str], ids: list[str], x: np.ndarray, order: list[int]) -> None:
    lines = [",".join(["id", *(header[j] for j in order)])]
    lines += [",".join([i, *(repr(float(r[j])) for j in order)]) for i, r in zip(ids, x)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_predict_matches_csv_columns_by_name(tmp_path):
    cli = Cli(tmp_path)
    cli("apply", "-f", str(cli.write("m.yaml", DATASET, model_doc(shards=2, slices=2, epochs=2))))
    ids, x = digits_rows()
    names = [f"p{j}" for j in range(64)]
    natural, shuffled = tmp_path / "natural.csv", tmp_path / "shuffled.csv"
    write_csv(natural, names, ids, x, list(range(64)))
    order = np.random.default_rng(7).permutation(64).tolist()
    write_csv(shuffled, names, ids, x, order)
    a = [json.loads(line) for line in cli("predict", "tiny", str(natural)).stdout.splitlines()]
    b = [json.loads(line) for line in cli("predict", "tiny", str(shuffled)).stdout.splitlines()]
    assert [r["id"] for r in a] == ids and a == b
    # the same numbers read by position would be other images: the check above can tell
    by_position = tmp_path / "by_position.csv"
    write_csv(by_position, names, ids, x[:, order], list(range(64)))
    c = [json.loads(line) for line in cli("predict", "tiny", str(by_position)).stdout.splitlines()]
    assert c != a

    unrelated = tmp_path / "unrelated.csv"
    write_csv(unrelated, [f"pixel_{j}" for j in range(64)], ids, x, list(range(64)))
    p = cli("predict", "tiny", str(unrelated), ok=False)
    assert p.returncode == 1 and not p.stdout and "Traceback" not in p.stderr
    assert f"{unrelated} line 1" in p.stderr and "'pixel_0'" in p.stderr and "not features" in p.stderr


@pytest.mark.slow
def test_apply_warns_when_a_spec_leaves_shards_or_slices_nearly_empty(tmp_path):
    cli = Cli(tmp_path)
    src = tmp_path / "six.csv"
    src.write_text("id,label,a\n" + "".join(f"r{i},{i % 2},{i}\n" for i in range(6)))
    ds = {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "six"},
          "spec": {"source": {"uri": str(src)}, "testFraction": 0.0}}
    m = {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": "wide"},
         "spec": {"datasetRef": "six", "shards": 8, "slices": 2, "training": {"epochsPerSlice": 1}}}
    out = cli("apply", "-f", str(cli.write("six.yaml", ds, m)))
    assert "warning: ShardedModel wide: shard(s) " in out.stderr and "have no training sample" in out.stderr
    assert "6 training sample(s) over 8 x 2 slices" in out.stderr
    desc = yaml.safe_load(cli("describe", "sm", "wide").stdout)
    placement = desc["status"]["placement"]
    assert sum(placement["shardSamples"]) == 6 and len(placement["emptyShards"]) >= 2
