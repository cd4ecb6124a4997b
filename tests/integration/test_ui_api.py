"""`shardwise ui` without a browser: the JSON API over real HTTP on 127.0.0.1, on a real store.

The Experiment here is stored by the test (a report and predictions with known label noise), so
every expected count can be computed independently; test_ui.py drives the page over a real run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from shardwise.api.dataset import DatasetSpec
from shardwise.control import StoreControl
from shardwise.data.sources import load_digits
from shardwise.data.table import SampleTable
from shardwise.datasets import DatasetStore
from shardwise.diagnosis.predictions import Predictions
from shardwise.errors import InvalidInput
from shardwise.local.lock import ReconcilerLock
from shardwise.store.layout import Layout
from shardwise.ui.items import page
from shardwise.ui.server import UiServer, make_server

NS, EXP, SHARDS = "default", "noisy", 3


# -- a stored Experiment with known answers ------------------------------------------------------
def store_experiment(store, table: SampleTable, name: str = EXP, dataset: str = "digits", noise: float = 0.08,
                     split: str = "test") -> tuple[Predictions, dict]:
    """Ingest `table`, then store a report and predictions as an evaluation would (schema of issue 5)."""
    L = Layout(NS)
    ds = DatasetStore(store, L)
    ds.ingest(dataset, DatasetSpec.model_validate({"source": {"builtin": "digits"}}), table)
    v = ds.view(dataset)
    a = v.assignment(SHARDS, 2, 0, False)
    m, c = len(table), len(table.class_names)
    rng = np.random.default_rng(7)
    truth = table.labels.copy()
    noisy = rng.random(m) < noise  # the model "knows" another class than the given label here
    truth[noisy] = (truth[noisy] + rng.integers(1, c, noisy.sum())) % c
    logits = 4.0 * np.eye(c)[truth][None] + rng.normal(0, 1.2, (SHARDS, m, c))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    preds = Predictions(table.ids, table.labels, v.train, a.shard, a.slice, probs.astype(np.float32),
                        table.class_names)
    oos = preds.out_of_shard().astype(np.float64)
    sug = oos.argmax(1)
    ix = np.arange(m)
    score = oos[ix, sug] - oos[ix, preds.labels]
    flagged = np.flatnonzero(sug != preds.labels)
    flagged = flagged[np.argsort(-score[flagged], kind="stable")]
    names = table.class_names
    cands = [{"id": str(preds.ids[i]), "label": names[preds.labels[i]], "suggested": names[sug[i]],
              "score": float(score[i]), "labelProb": float(oos[i, preds.labels[i]]),
              "suggestedProb": float(oos[i, sug[i]]),
              "train": bool(preds.train[i]), "shard": int(preds.shard[i]), "slice": int(preds.slice[i])}
             for i in flagged]
    key = L.experiment_predictions(name)
    store.put_bytes(key, preds.to_npz())
    report = {"experiment": name, "model": "m", "version": 1, "dataset": dataset, "datasetRevision": 1,
              "split": split, "samples": int((~preds.train).sum()), "accuracy": 0.9, "classNames": list(names),
              "labelIssues": {"method": "out-of-shard disagreement", "flagged": len(cands), "candidates": cands},
              "predictionsKey": key, "comparison": None}
    store.put_json(L.experiment_report(name), report)
    return preds, report


@pytest.fixture
def digits_exp(local_store):
    preds, report = store_experiment(local_store, load_digits(20))
    return local_store, preds, report


@pytest.fixture
def digits_exp_any(any_store):
    """The same on a folder and on S3 (SeaweedFS)."""
    preds, report = store_experiment(any_store, load_digits(20))
    return any_store, preds, report


@contextmanager
def serving(store, **kw):
    srv = make_server(store, NS, "tester", port=0, **kw)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def call(srv: UiServer, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, object, dict]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    h = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=h | (headers or {}))
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    ctype = r.getheader("Content-Type", "")
    return r.status, (json.loads(raw) if ctype.startswith("application/json") else raw), dict(r.getheaders())


def get(srv, path):
    status, doc, _ = call(srv, "GET", path)
    assert status == 200, doc
    return doc


def manifest(store, rev: int, dataset: str = "digits") -> dict:
    return store.get_json(Layout(NS).dataset_revision(dataset, rev))


# -- pure pieces -----------------------------------------------------------------------------------
@pytest.mark.parametrize("total,offset,limit,expected", [
    (0, 0, 24, (0, 0)), (10, 0, 24, (0, 10)), (48, 24, 24, (24, 48)), (49, 48, 24, (48, 49)),
    (49, 500, 24, (48, 49)),  # past the end: the last page
    (48, 48, 24, (24, 48)), (5, 3, 2, (3, 5)),
])
def test_page_bounds(total, offset, limit, expected):
    assert page(total, offset, limit) == expected


# -- lists, filters, paging ----------------------------------------------------------------------
def test_candidates_are_the_reports_ranked_list_with_filters_and_paging(digits_exp):
    store, _, report = digits_exp
    cands = report["labelIssues"]["candidates"]
    assert 50 < len(cands) < 400  # the planted noise is found
    with serving(store) as srv:
        doc = get(srv, "/api/items?view=candidates&limit=24")
        assert doc["total"] == len(cands) and doc["experiment"] == EXP
        assert [i["id"] for i in doc["items"]] == [c["id"] for c in cands[:24]]
        first = doc["items"][0]
        assert first["label"] == cands[0]["label"] and first["suggested"] == cands[0]["suggested"]
        assert first["state"] == "open" and "features" not in first  # images: thumbnails, not values

        seen = []
        for offset in range(0, len(cands), 50):  # every page, no overlap, nothing lost
            d = get(srv, f"/api/items?view=candidates&offset={offset}&limit=50")
            assert d["offset"] == offset and d["total"] == len(cands)
            seen += [i["id"] for i in d["items"]]
        assert seen == [c["id"] for c in cands]

        for label in ("3", "8"):
            d = get(srv, f"/api/items?view=candidates&label={label}&limit=200")
            assert d["total"] == sum(c["label"] == label for c in cands)
            assert {i["label"] for i in d["items"]} <= {label}
        d = get(srv, "/api/items?view=candidates&shard=test&limit=200")
        assert d["total"] == sum(not c["train"] for c in cands) and all(i["shard"] == -1 for i in d["items"])
        d = get(srv, "/api/items?view=candidates&shard=1&minScore=0.5&limit=200")
        assert d["total"] == sum(c["shard"] == 1 and c["score"] >= 0.5 for c in cands)


def test_errors_are_the_wrong_predictions_of_the_split_and_browse_lists_every_active_sample(digits_exp):
    store, preds, _ = digits_exp
    wrong = (~preds.train) & (preds.predicted() != preds.labels)
    with serving(store) as srv:
        d = get(srv, "/api/items?view=errors&limit=200")
        assert d["total"] == int(wrong.sum()) > 0 and get(srv, "/api/info")["errors"] == d["total"]
        lp = [i["labelProb"] for i in d["items"]]
        assert lp == sorted(lp) and all(i["suggested"] != i["label"] for i in d["items"])
        assert all(i["shard"] == -1 for i in d["items"])  # test split only

        b = get(srv, "/api/items?view=browse&limit=10")
        assert b["total"] == len(preds) and b["items"][0]["id"] == "digits-00000"
        b7 = get(srv, "/api/items?view=browse&label=7&shard=2&limit=200")
        assert b7["total"] == int(((preds.labels == 7) & (preds.shard == 2)).sum())


# -- actions ---------------------------------------------------------------------------------------
def test_accept_relabel_and_drop_become_revisions_and_leave_the_list(digits_exp_any):
    store, preds, report = digits_exp_any
    cands = report["labelIssues"]["candidates"]
    c0, c1, c2 = cands[0], cands[1], cands[2]
    typed = next(n for n in preds.class_names if n not in (c1["label"], c1["suggested"]))
    t0 = datetime.now(UTC).replace(microsecond=0)
    with serving(store) as srv:
        r = get(srv, "/api/info")
        assert (r["datasetRevision"], r["currentRevision"], r["pendingChanges"]) == (1, 1, 0)
        assert "shardwise reconcile" in r["notice"] and r["isImage"] and r["shards"] == SHARDS

        s, a, _ = call(srv, "POST", "/api/actions", {"id": c0["id"], "action": "relabel", "label": c0["suggested"]})
        assert s == 200 and a["revision"] == 2 and "next reconcile" in a["message"]
        s, b, _ = call(srv, "POST", "/api/actions", {"id": c1["id"], "action": "relabel", "label": typed})
        assert s == 200 and b["revision"] == 3
        s, c, _ = call(srv, "POST", "/api/actions", {"id": c2["id"], "action": "drop"})
        assert s == 200 and c["revision"] == 4

        d = get(srv, "/api/items?view=candidates&limit=200")
        assert d["total"] == len(cands) - 3 and d["fixed"] == 3
        assert {c0["id"], c1["id"], c2["id"]}.isdisjoint(i["id"] for i in d["items"])
        d = get(srv, "/api/items?view=candidates&limit=3&fixed=true")
        assert [(i["id"], i["state"], i["current"]) for i in d["items"]] == [
            (c0["id"], "relabelled", c0["suggested"]), (c1["id"], "relabelled", typed), (c2["id"], "removed", None)]
        assert (d["items"][2]["removedAt"], d["items"][2]["removedBy"]) == (4, "dropped")
        info = get(srv, "/api/info")
        assert info["currentRevision"] == 4 and [x["kind"] for x in info["changes"]] == ["drop", "relabel", "relabel"]
        b = get(srv, "/api/items?view=browse&limit=1")
        assert b["total"] == len(preds) - 1  # the dropped sample is gone from browsing

    m2, m3, m4 = manifest(store, 2)["change"], manifest(store, 3)["change"], manifest(store, 4)["change"]
    assert m2 == {"kind": "relabel", "by": "tester", "at": m2["at"],
                  "labels": [{"id": c0["id"], "from": c0["label"], "to": c0["suggested"]}]}
    assert m3["labels"] == [{"id": c1["id"], "from": c1["label"], "to": typed}] and m3["by"] == "tester"
    assert m4 == {"kind": "drop", "by": "tester", "at": m4["at"], "ids": [c2["id"]]}
    for ch in (m2, m3, m4):
        at = datetime.strptime(ch["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert 0 <= (at - t0).total_seconds() < 60
    state = DatasetStore(store, Layout(NS)).state("digits", 4)
    pos = {s: i for i, s in enumerate(preds.ids.tolist())}
    assert state.tombstoned_at[pos[c2["id"]]] == 4 and int(state.active.sum()) == len(preds) - 1


def test_bad_actions_are_refused_with_the_field_and_nothing_is_written(digits_exp):
    store, _, report = digits_exp
    sid = report["labelIssues"]["candidates"][0]["id"]
    given = report["labelIssues"]["candidates"][0]["label"]
    with serving(store) as srv:
        cases = [
            ({"id": sid, "action": "relabel", "label": "cat"}, 400, "label", "'cat' is not a class"),
            ({"id": sid, "action": "relabel"}, 400, "label", "required"),
            ({"id": sid, "action": "relabel", "label": given}, 400, "label", "already has label"),
            ({"id": "no-such-sample", "action": "relabel", "label": "1"}, 404, "id", "not a sample"),
            ({"id": "no-such-sample", "action": "drop"}, 404, "id", "not a sample"),
            ({"id": sid, "action": "drop", "label": "1"}, 400, "label", "not used"),
            ({"id": sid, "action": "burn"}, 400, "action", "action:"),
            ({"id": sid, "action": "drop", "by": "mallory"}, 400, "by", "by:"),  # who is the server's --user
            ({"id": sid, "action": "drop", "experiment": "nope"}, 404, "experiment", "no report"),
        ]
        for body, status, field, text in cases:
            s, doc, _ = call(srv, "POST", "/api/actions", body)
            assert (s, doc["field"]) == (status, field), (body, doc)
            assert text in doc["error"] and doc["error"].startswith(f"{field}:"), doc
        s, doc, _ = call(srv, "POST", "/api/actions", b"{not json")
        assert s == 400 and doc["field"] == "body"
        assert DatasetStore(store, Layout(NS)).current_revision("digits") == 1

        assert call(srv, "POST", "/api/actions", {"id": sid, "action": "drop"})[0] == 200
        s, doc, _ = call(srv, "POST", "/api/actions", {"id": sid, "action": "relabel", "label": "1"})
        assert s == 409 and doc["field"] == "id" and "already removed" in doc["error"]

        lock = ReconcilerLock(store.uri, NS)  # a reconciler is running: no revision under its feet
        assert lock.acquire()
        try:
            other = report["labelIssues"]["candidates"][1]["id"]
            s, doc, _ = call(srv, "POST", "/api/actions", {"id": other, "action": "drop"})
            assert s == 409 and "reconciler" in doc["error"]
        finally:
            lock.release()


def test_bad_queries_are_400_naming_the_parameter(digits_exp):
    store, _, _ = digits_exp
    with serving(store) as srv:
        for q, field in [("limit=1000", "limit"), ("limit=0", "limit"), ("offset=-1", "offset"),
                         ("view=all", "view"), ("shard=x", "shard"), ("minScore=nan", "minScore"),
                         ("label=cat", "label"), ("colour=red", "colour"), ("experiment=Bad_Name", "experiment")]:
            s, doc, _ = call(srv, "GET", f"/api/items?{q}")
            assert s in (400, 404) and doc["field"] == field and doc["error"].startswith(f"{field}:"), (q, doc)
        s, doc, _ = call(srv, "GET", "/api/nothing")
        assert s == 404 and doc["error"]


# -- thumbnails and tabular data -------------------------------------------------------------------
def test_thumbnails_are_pngs_of_the_stored_payload(digits_exp):
    store, _, _ = digits_exp
    with serving(store) as srv:
        s, png, h = call(srv, "GET", "/api/thumb?dataset=digits&id=digits-00005")
        assert s == 200 and h["Content-Type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert call(srv, "GET", "/api/thumb?dataset=digits&id=digits-00006")[1] != png
        s, doc, _ = call(srv, "GET", "/api/thumb?dataset=digits&id=nope")
        assert s == 404 and doc["field"] == "id"
        s, doc, _ = call(srv, "GET", "/api/thumb?dataset=other&id=x")
        assert s == 404 and doc["field"] == "dataset"


def test_a_tabular_dataset_shows_feature_values_instead_of_thumbnails(local_store):
    rng = np.random.default_rng(1)
    n = 300
    table = SampleTable(np.array([f"row-{i:03d}" for i in range(n)]), rng.integers(0, 3, n).astype(np.int64),
                        rng.normal(size=(n, 20)).astype(np.float32), np.full(n, "", dtype=str), ("ant", "bee", "cat"))
    store_experiment(local_store, table, name="tab", dataset="tabular", noise=0.2)
    with serving(local_store) as srv:
        assert get(srv, "/api/info?experiment=tab")["isImage"] is False
        item = get(srv, "/api/items?experiment=tab&view=browse&limit=1")["items"][0]
        assert item["id"] == "row-000" and item["features"] == [round(float(x), 4) for x in table.features[0][:16]]
        s, doc, _ = call(srv, "GET", "/api/thumb?dataset=tabular&id=row-000")
        assert s == 400 and "feature vectors" in doc["error"]
        s, doc, _ = call(srv, "POST", "/api/actions", {"experiment": "tab", "id": "row-001", "action": "relabel",
                                                        "label": "dog"})
        assert s == 400 and "'dog' is not a class" in doc["error"] and "ant, bee, cat" in doc["error"]


# -- the server itself -----------------------------------------------------------------------------
def test_binds_loopback_and_refuses_forged_requests(digits_exp):
    store, _, report = digits_exp
    sid = report["labelIssues"]["candidates"][0]["id"]
    with serving(store) as srv:
        assert srv.server_address[0] == "127.0.0.1" and srv.url.startswith("http://127.0.0.1:")
        s, html, h = call(srv, "GET", "/")
        assert s == 200 and b"/static/app.js" in html and "script-src 'self'" in h["Content-Security-Policy"]
        s, doc, _ = call(srv, "GET", "/api/info", headers={"Host": "evil.example:80"})  # DNS rebinding
        assert s == 403 and doc["field"] == "Host"
        s, doc, _ = call(srv, "POST", "/api/actions", {"id": sid, "action": "drop"},
                         headers={"Origin": "http://evil.example"})
        assert s == 403 and doc["field"] == "Origin"
        s, doc, _ = call(srv, "POST", "/api/actions", json.dumps({"id": sid, "action": "drop"}).encode(),
                         headers={"Content-Type": "text/plain"})  # what a cross-site form can send
        assert s == 415
        assert DatasetStore(store, Layout(NS)).current_revision("digits") == 1
    with pytest.raises(Exception, match="--experiment: Experiment default/nope has no report"):
        make_server(store, NS, "tester", experiment="nope", port=0)


def test_static_files_are_package_data_and_reach_nothing_outside():
    static = resources.files("shardwise.ui").joinpath("static")
    names = sorted(p.name for p in static.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for name in names:
        text = static.joinpath(name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), \
            f"{name} names an external URL"
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"ui/static/*.js"' in pyproject and '"ui/static/*.html"' in pyproject


def test_store_control_drop_validates_ids_first(digits_exp):
    store, _, _ = digits_exp
    c = StoreControl(store, NS)
    with pytest.raises(InvalidInput, match="not in Dataset"):
        c.drop("digits", ["digits-00001", "nope"], by="t")
    with pytest.raises(InvalidInput, match="no sample ids"):
        c.drop("digits", [], by="t")
    assert c.datasets.current_revision("digits") == 1
    assert c.drop("digits", ["digits-00001", "digits-00002", "digits-00001"], by="t") == 2
    assert manifest(store, 2)["change"]["ids"] == ["digits-00001", "digits-00002"]
    with pytest.raises(InvalidInput, match="already dropped or forgotten: digits-00002"):
        c.drop("digits", ["digits-00002"], by="t")
    with pytest.raises(InvalidInput, match="dropped or forgotten samples cannot be relabelled: digits-00002"):
        c.relabel("digits", {"digits-00002": "3"}, by="t")
    assert c.datasets.current_revision("digits") == 2  # neither refusal wrote a revision


def test_cli_prints_the_url_and_serves_until_interrupted(digits_exp, tmp_path):
    store, _, _ = digits_exp
    env = {**os.environ, "SHARDWISE_LOCK_DIR": str(tmp_path / "locks")}
    p = subprocess.Popen([sys.executable, "-m", "shardwise.cli", "--store", str(store.root), "ui", "--port", "0",
                          "--user", "carol"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line + p.stderr.read()
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        conn.request("GET", "/api/experiments")
        doc = json.loads(conn.getresponse().read())
        assert doc["user"] == "carol" and doc["default"] == EXP
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
    r = subprocess.run([sys.executable, "-m", "shardwise.cli", "--store", str(store.root), "ui", "--experiment",
                        "nope", "--port", "0"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert r.returncode == 1 and "--experiment: Experiment default/nope has no report" in r.stderr
