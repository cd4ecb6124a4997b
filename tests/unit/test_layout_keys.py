"""store/layout.py builds every key and is the one place that reads a key back: for every kind of key,
parse(build(...)) gives back the kind and every name and number that went in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shardwise.store.layout import KEY_KINDS, Layout, parse_key

label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
num = st.integers(min_value=0, max_value=999_999)
sha = st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True)

# kind -> (builder, strategies of its arguments, the fields parse must give back for them)
BUILDERS = {
    "checkpoint": (lambda L, m, u, k, r, v: L.checkpoint(m, u, k, r, v), (label, label, num, num, num),
                   ("model", "uid", "shard", "slice", "revision")),
    "checkpoint-meta": (lambda L, m, u, k, r, v: L.checkpoint_meta(L.checkpoint(m, u, k, r, v)),
                        (label, label, num, num, num), ("model", "uid", "shard", "slice", "revision")),
    "version": (lambda L, m, u, n: L.version(m, u, n), (label, label, num), ("model", "uid", "version")),
    "current": (lambda L, m, u: L.current(m, u), (label, label), ("model", "uid")),
    "job-request": (lambda L, m, u, j: L.job_request(m, u, j), (label, label, label), ("model", "uid", "job")),
    "job-status": (lambda L, m, u, j: L.job_status(m, u, j), (label, label, label), ("model", "uid", "job")),
    "evaluation": (lambda L, m, u, n: L.evaluation(m, u, n), (label, label, num), ("model", "uid", "version")),
    "evaluation-request": (lambda L, m, u, n: L.evaluation_request(m, u, n), (label, label, num),
                           ("model", "uid", "version")),
    "purge-record": (lambda L, m, u, r: L.purge_record(m, u, r), (label, label, num), ("model", "uid", "revision")),
    "dataset-payload": (lambda L, d, h: L.dataset_payload(d, h), (label, sha), ("dataset", "sha")),
    "dataset-current": (lambda L, d: L.dataset_current(d), (label,), ("dataset",)),
    "dataset-schema": (lambda L, d: L.dataset_schema(d), (label,), ("dataset",)),
    "dataset-secret": (lambda L, d: L.dataset_secret(d), (label,), ("dataset",)),
    "dataset-revision": (lambda L, d, r: L.dataset_revision(d, r), (label, num), ("dataset", "revision")),
    "dataset-state": (lambda L, d, r: L.dataset_state(d, r), (label, num), ("dataset", "revision")),
    "dataset-trained": (lambda L, d, m, u: L.dataset_trained(d, m, u), (label, label, label),
                        ("dataset", "model", "uid")),
    "experiment-report": (lambda L, x: L.experiment_report(x), (label,), ("experiment",)),
    "experiment-request": (lambda L, x: L.experiment_request(x), (label,), ("experiment",)),
    "experiment-predictions": (lambda L, x: L.experiment_predictions(x), (label,), ("experiment",)),
    "resource": (lambda L, p, n: L.resource(p, n), (label, label), ("plural", "name")),
    "ledger-entry": (lambda L, s, r: L.ledger_entry(s, r), (num, label), ("seq", "request")),
}


def test_every_kind_of_key_has_a_builder_here():
    assert set(BUILDERS) == set(KEY_KINDS)


@st.composite
def built(draw):
    kind = draw(st.sampled_from(sorted(BUILDERS)))
    build, strategies, names = BUILDERS[kind]
    args = [draw(s) for s in strategies]
    return kind, draw(label), args, build, names


@settings(max_examples=400, deadline=None)
@given(built())
def test_a_key_reads_back_as_what_built_it(case):
    kind, ns, args, build, names = case
    L = Layout(ns)
    key = build(L, *args)
    p = L.parse(key)
    assert p is not None and p.kind == kind, (key, p)
    for name, arg in zip(names, args):
        got = p.fields[name]
        assert (int(got) == arg) if isinstance(arg, int) else (got == arg), (key, name, got, arg)
    assert Layout(ns + "x").parse(key) is None  # another namespace's key is not this one's


def test_keys_of_no_known_kind_read_as_none():
    for rel in ("models/m/u/shard-0/slice-1/r000002/checkpoint.bak", "models/m/u/notes.txt", "datasets/d",
                "ledger/abc.json", "experiments/x/report.json.tmp", ""):
        assert parse_key(rel) is None, rel
