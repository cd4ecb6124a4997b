"""No residue: after forgets through the CLI on a folder store, no file names a forgotten sample.

The check trusts nothing of Shardwise's own: it reads every file of the store as raw bytes (and
every member of every zip, which is what an .npz is) and looks for the forgotten ids, the owner key
(an e-mail address), its unsalted sha256 (what anyone could confirm by hashing a guess), and the
ids in the forms numpy stores them (UTF-32). Only the ForgetRequest objects may name them: they
are the requests themselves, listed as retained by `verify --scan`.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import yaml

from shardwise.cli import main

pytestmark = pytest.mark.slow
OWNER = "alice@example.com"


def _source(path: Path) -> None:
    rows = ["id,label,owner,a,b"]
    for i in range(120):
        owner = OWNER if i % 10 == 3 else (f"user{i % 7}@example.org" if i % 2 else "")
        rows.append(f"row-{i:03d},{'cat' if i % 3 else 'dog'},{owner},{(i % 3) * 1.5},{i % 5}")
    path.write_text("\n".join(rows) + "\n")


def _needles(ids: list[str]) -> dict[bytes, str]:
    out = {}
    for text in [*ids, OWNER, hashlib.sha256(OWNER.encode()).hexdigest()]:
        out[text.encode()] = text
        out[text.encode("utf-32-le")] = text  # how a numpy string array stores it
    return out


def _files_naming(root: Path, needles: dict[bytes, str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        data = f.read_bytes()
        blobs = [data]
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                blobs += [z.read(n) for n in z.namelist()]
        hits = {text for blob in blobs for needle, text in needles.items() if needle in blob}
        if hits:
            found[str(f.relative_to(root))] = hits
    return found


def run(store: Path, *args: str) -> int:
    return main(["--store", str(store), "--parallel", "2", *args])


def test_nothing_in_the_store_names_a_forgotten_sample(tmp_path, capsys):
    store, src = tmp_path / "store", tmp_path / "data.csv"
    _source(src)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "shardwise.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
         "spec": {"source": {"uri": str(src)}}},
        {"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "metadata": {"name": "m"},
         "spec": {"datasetRef": "d", "shards": 2, "slices": 2, "training": {"epochsPerSlice": 2}}},
        {"apiVersion": "shardwise.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "x"},
         "spec": {"modelRef": "m", "datasetRef": "d", "split": "all"}},
    ]))
    assert run(store, "apply", "-f", str(tmp_path / "m.yaml")) == 0
    # a relabel and a drop of samples forgotten later: their revision records named them
    assert run(store, "relabel", "--dataset", "d", "--id", "row-001", "--label", "dog", "--by", "bob") == 0
    owned = [f"row-{i:03d}" for i in range(120) if i % 10 == 3]
    assert run(store, "forget", "--dataset", "d", "--owner", OWNER, "--name", "gdpr-alice") == 0
    assert run(store, "forget", "--dataset", "d", "--ids", "row-001,row-002", "--name", "gdpr-ids") == 0
    capsys.readouterr()
    forgotten = owned + ["row-001", "row-002"]

    found = _files_naming(store, _needles(forgotten))
    assert set(found) == {"default/resources/forgetrequests/gdpr-alice.json",
                          "default/resources/forgetrequests/gdpr-ids.json"}, found
    # negative control: the same search finds samples that were not forgotten
    kept = _files_naming(store, _needles(["row-000", "row-005"]))
    assert any("payload/" in k for k in kept) and any("experiments/x/" in k for k in kept)
    # and the scan, which knows only keyed tags, agrees
    assert run(store, "verify", "--scan") == 0
    out = capsys.readouterr()
    assert "0 finding(s)" in out.out and "2 ForgetRequest(s) or Correction(s) naming forgotten samples" in out.out
