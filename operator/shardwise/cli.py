"""`shardwise`: the local body's command line (kubectl-like, no cluster needed)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from shardwise.api import KINDS, Dataset, ForgetRequest, ShardedModel
from shardwise.api.common import dns_label_ok
from shardwise.api.forget import ForgetRequestSpec
from shardwise.datasets import DatasetStore
from shardwise.errors import InvalidInput, NotFound, ShardwiseError, reading
from shardwise.local.lock import ReconcilerLock
from shardwise.local.manifests import describe_validation, load_manifests
from shardwise.local.registry import Registry, kind_names, kind_of
from shardwise.local.runner import LocalRunner
from shardwise.local.table import render_table
from shardwise.store import StoreMissing, open_store
from shardwise.store.layout import Layout

DEFAULT_STORE = ".shardwise"


def _parallel_default() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _count(hi: int) -> Callable[[str], int]:
    """argparse type: a whole number from 1 to hi (0 processes or shards would do nothing, silently)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= n <= hi:
            raise argparse.ArgumentTypeError(f"{n} is not between 1 and {hi}")
        return n
    return parse


def _kinds_help() -> str:
    """The kinds and every name each is known by, as a help epilog (from the API classes)."""
    rows = [(cls.PLURAL, ", ".join(n for n in kind_names(cls) if n != cls.PLURAL)) for cls in KINDS.values()]
    width = max(len(plural) for plural, _ in rows)
    return "kinds (any of the names, in any case):\n" + "\n".join(
        f"  {plural:<{width}}  {names}" for plural, names in rows)


def _kind_parser(sub, cmd: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose first argument is a kind: the kinds' names in its --help."""
    k = sub.add_parser(cmd, help=summary, epilog=_kinds_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("kind", help="the kind of resource: any of the names listed below")
    return k


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardwise", description="SISA training that can forget, on one machine.")
    p.add_argument("--store", default=os.environ.get("SHARDWISE_STORE", DEFAULT_STORE),
                   help="store root: a folder, or s3://bucket/prefix with SHARDWISE_S3_ENDPOINT, AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY set (default: $SHARDWISE_STORE or ./.shardwise); made by the "
                        "first command that writes (apply, forget, relabel, reconcile), never by one that reads")
    p.add_argument("-n", "--namespace", default="default", help="tenant namespace (default: default)")
    p.add_argument("--cluster", action="store_true", default=os.environ.get("SHARDWISE_CLUSTER") == "1",
                   help="resources from the API server of the current kube context (KUBECONFIG), as its user, "
                        "instead of the store; --store then names the tenant's store the operator writes "
                        "(s3://...). Serves get, describe, relabel, ui, report, predict and verify; apply, "
                        "delete and forget go through kubectl (default: $SHARDWISE_CLUSTER=1)")
    p.add_argument("--context", default=None, help="with --cluster: this kube context instead of the current one "
                                                   "(implies --cluster)")
    p.add_argument("--parallel", type=_count(1024), default=_parallel_default(), help="trainer processes at once")
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("apply", help="create or update resources from YAML, then reconcile")
    a.add_argument("-f", "--filename", action="append", required=True, help="file or folder (repeatable)")
    a.add_argument("--no-wait", action="store_true", help="store the resources and return without reconciling")

    g = _kind_parser(sub, "get", "list resources as a table")
    g.add_argument("name", nargs="?")
    g.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")

    d = _kind_parser(sub, "describe", "show one resource with its status")
    d.add_argument("name")

    rm = _kind_parser(sub, "delete", "delete a resource (its stored objects are kept)")
    rm.add_argument("name")

    f = sub.add_parser("forget", help="file a ForgetRequest and reconcile until it is complete")
    f.add_argument("--dataset", required=True)
    sel = f.add_mutually_exclusive_group(required=True)
    sel.add_argument("--owner", help="forget every sample of this owner key")
    sel.add_argument("--ids", help="comma-separated sample ids")
    sel.add_argument("--ids-file", help="file with one sample id per line")
    f.add_argument("--name", help="name of the ForgetRequest (default: generated)")
    f.add_argument("--no-wait", action="store_true")

    rl = sub.add_parser("relabel", help="correct labels (a new Dataset revision), then retrain what they touch")
    rl.add_argument("--dataset", required=True)
    rl.add_argument("--id", action="append", required=True, help="sample id (repeatable, paired with --label)")
    rl.add_argument("--label", action="append", required=True, help="the corrected label of the matching --id")
    rl.add_argument("--by", default=None, help="who made the correction (default: the OS user; in a cluster the "
                                               "kube context's user, and nobody else)")
    rl.add_argument("--no-wait", action="store_true", help="record the correction and return without retraining")
    rl.add_argument("--timeout", type=_count(86_400), default=3600,
                    help="with --cluster: seconds to wait for the operator (default: 3600)")

    pr = sub.add_parser("predict", help="predict with the published version of a model")
    pr.add_argument("model")
    pr.add_argument("file", help="CSV whose header names every feature of the model's Dataset, in any order (its "
                                 "id column optional), or JSONL with 'features' or one key per feature")

    sub.add_parser("reconcile", help="reconcile everything in the namespace until idle")

    v = sub.add_parser("verify", help="re-check the ledger of forget certificates against the store")
    v.add_argument("request", nargs="?", help="only this ForgetRequest's certificate")
    v.add_argument("--scan", action="store_true",
                   help="also scan every object (every S3 version) of the namespace for data of forgotten samples")
    v.add_argument("--models", action="append", default=[],
                   help="with --scan: ShardedModel YAML (e.g. kubectl get shardedmodels -o yaml) for a store the "
                        "operator runs; the local body's models are read from the store (repeatable)")

    c = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    c.add_argument("--out", default="crds")

    op = sub.add_parser("operator", help="run the Kubernetes operator (kopf); settings from SHARDWISE_* env")
    op.add_argument("--standalone", action="store_true", default=True, help="no peering (one replica); the default")
    op.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8080/healthz")
    op.add_argument("--log-format", choices=["plain", "full", "json"], default="full",
                    help="plain: the message; full: time, logger, level and message (default); json: one JSON "
                         "object a line")
    op.add_argument("-v", "--verbose", action="store_true", help="DEBUG logs")
    op.add_argument("--metrics-port", type=int, default=None,
                    help="serve Prometheus metrics on this port, path /metrics (default: none)")

    dm = sub.add_parser("demo", help="train on digits, forget one person, show the speedup and the certificate")
    dm.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    dm.add_argument("--shards", type=_count(1024), default=4)
    dm.add_argument("--slices", type=_count(1024), default=4)
    dm.add_argument("--owner", default=None, help="owner key to forget (default: one picked by a seeded draw)")

    rp = sub.add_parser("report", help="write an Experiment's diagnosis as one self-contained HTML file (+ JSON)")
    rp.add_argument("experiment", help="Experiment name (it must have run: apply or reconcile)")
    rp.add_argument("--out", default=None, metavar="PATH",
                    help="HTML file to write (default: EXPERIMENT.html); the JSON beside it, suffix .json")
    rp.add_argument("--store", default=argparse.SUPPRESS, help="same as the global --store")

    ui = sub.add_parser("ui", help="serve a local web page for fixing labels from an Experiment's diagnosis")
    ui.add_argument("--experiment", default=None, help="Experiment to open (default: the first with a report)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    ui.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 = any free port)")
    ui.add_argument("--user", default=None, help="who the fixes are recorded as (default: the OS user name)")
    return p


# -- helpers -----------------------------------------------------------------------------
def _in_cluster(args) -> bool:
    return bool(args.cluster or args.context)


def _session(args, create: bool = False) -> tuple:
    """The store and the resources: the store's registry, or with --cluster the API server's. create: the
    command writes, so a missing store is made; a command that only reads refuses it instead (a mistyped
    --store would otherwise leave an empty store behind)."""
    if _in_cluster(args):
        from shardwise.kube.cluster import Cluster, ClusterRegistry

        if not args.store.startswith("s3://"):
            raise InvalidInput(f"--store: with --cluster name the tenant's store the operator writes (s3://bucket"
                               f"[/prefix], with that tenant's keys), not {args.store!r}")
        store = open_store(args.store, create=False)
        return store, ClusterRegistry(Cluster(args.context), args.namespace)
    try:
        store = open_store(args.store, create=create)
    except StoreMissing as e:
        raise StoreMissing(f"{e}: check --store (or $SHARDWISE_STORE); a command that writes, such as "
                           "apply, creates it") from None
    return store, Registry(store, args.namespace)


def _reconcile(args, store, quiet: bool = False) -> bool:
    """Run the loop unless another process already does; True if it ran here."""
    lock = ReconcilerLock(store.uri, args.namespace)
    if not lock.acquire():
        print(f"queued: reconciler pid {lock.holder()} is running on this store and will pick it up", file=sys.stderr)
        return False
    try:
        log = ((lambda m: None) if quiet
               else (lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)))
        LocalRunner(store, args.namespace, parallel=args.parallel, log=log).run()
    finally:
        lock.release()
    return True


def _failed(registry: Registry, names: list[tuple[type, str]]) -> list[str]:
    out: list[str] = []
    for cls, name in names:
        r = registry.get(cls, name)
        if r is not None and r.status is not None and r.status.phase == "Failed":
            msg = next((c.message for c in r.status.conditions if c.type in ("Failed", "Ready") and c.message), "")
            out.append(f"{cls.KIND} {name} failed: {msg or r.status.message}")
    return out


# -- commands ----------------------------------------------------------------------------
def cmd_apply(args) -> int:
    resources = load_manifests(args.filename)
    store, reg = _session(args, create=True)
    for r in resources:  # every check before any write: nothing is half-applied
        if r.metadata.namespace == "default" and args.namespace != "default":
            r.metadata.namespace = args.namespace
        reg.check_apply(r)
    for r in resources:
        print(f"{r.kind.lower()}.shardwise.io/{r.name} {reg.apply(r)}")
    if args.no_wait:
        return 0
    _reconcile(args, store)
    for r in resources:  # a spec that leaves shards or slices (nearly) empty: said, not refused
        cur = reg.get(type(r), r.name)
        sparse = cur.status.condition("PlacementSparse") if cur is not None and cur.status is not None else None
        if sparse is not None and sparse.status == "True":
            print(f"warning: {r.kind} {r.name}: {sparse.message}", file=sys.stderr)
    problems = _failed(reg, [(type(r), r.name) for r in resources])
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_get(args) -> int:
    cls = kind_of(args.kind)
    _, reg = _session(args)
    items = [reg.require(cls, args.name)] if args.name else reg.list(cls)
    if args.output == "table":
        if not items:
            print(f"No {cls.PLURAL} found in namespace {args.namespace}.", file=sys.stderr)
            return 0
        print(render_table(cls, items))
    else:
        docs = [i.to_doc() for i in items]
        out = docs[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": docs}
        print(json.dumps(out, indent=2) if args.output == "json" else yaml.safe_dump(out, sort_keys=False))
    return 0


def cmd_describe(args) -> int:
    cls = kind_of(args.kind)
    _, reg = _session(args)
    print(yaml.safe_dump(reg.require(cls, args.name).to_doc(), sort_keys=False), end="")
    return 0


def cmd_delete(args) -> int:
    cls = kind_of(args.kind)
    _, reg = _session(args)
    reg.delete(cls, args.name)
    print(f"{cls.KIND.lower()}.shardwise.io/{args.name} deleted")
    return 0


def cmd_forget(args) -> int:
    store, reg = _session(args, create=True)
    for opt, value in (("--dataset", args.dataset), ("--name", args.name)):
        if value is not None and not dns_label_ok(value):
            raise InvalidInput(f"{opt}: {value!r} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
    if reg.get(Dataset, args.dataset) is None and not DatasetStore(store, Layout(args.namespace)).exists(args.dataset):
        # a deleted Dataset whose stored data is kept (models trained on it retained) can still be forgotten from
        raise NotFound(f"--dataset: Dataset {args.namespace}/{args.dataset} not found")
    if args.ids_file:
        with reading(f"--ids-file {args.ids_file}"):
            text = Path(args.ids_file).read_text(encoding="utf-8")
        ids = [line.strip() for line in text.splitlines() if line.strip()]
    elif args.ids:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    else:
        ids = []
    opt = "--owner" if args.owner is not None else "--ids-file" if args.ids_file else "--ids"
    if args.owner is None and not ids:
        raise InvalidInput(f"{opt}: no sample ids given")
    try:
        spec = ForgetRequestSpec(datasetRef=args.dataset, sampleIds=ids, ownerKey=args.owner)
    except ValidationError as e:
        raise InvalidInput(f"{opt}: {describe_validation(e)}") from None
    name = args.name or "forget-" + hashlib.sha256(f"{spec.model_dump_json()}{time.time()}".encode()).hexdigest()[:8]
    fr = ForgetRequest(kind="ForgetRequest", metadata={"name": name, "namespace": args.namespace}, spec=spec)
    # stdout carries only the certificate (YAML), so it can be piped
    print(f"forgetrequest.shardwise.io/{name} {reg.apply(fr)}", file=sys.stderr)
    if args.no_wait or not _reconcile(args, store):
        return 0
    done = reg.require(ForgetRequest, name)
    if done.status is None or done.status.phase != "Complete":
        phase = done.status.phase if done.status else "Pending"
        why = done.status.message if done.status else ""
        models = [m for m in reg.list(ShardedModel) if m.spec.datasetRef == args.dataset]
        why += "".join(f"; {p}" for p in _failed(reg, [(ShardedModel, m.name) for m in models]))
        print(f"error: ForgetRequest {name} is {phase}, not Complete: {why.lstrip('; ')}", file=sys.stderr)
        return 1
    print(yaml.safe_dump({"certificate": done.status.certificate if done.status else None}, sort_keys=False), end="")
    return 0


def cmd_relabel(args) -> int:
    from shardwise.control import StoreControl

    if len(args.id) != len(args.label):
        raise InvalidInput(f"relabel: {len(args.id)} --id but {len(args.label)} --label; give one label per id")
    if _in_cluster(args):
        return _relabel_in_cluster(args)
    store, reg = _session(args, create=True)
    reg.require(Dataset, args.dataset)
    args.by = args.by or os.environ.get("USER", "unknown")
    lock = ReconcilerLock(store.uri, args.namespace)
    if not lock.acquire():  # a revision must not be written under a running reconciler's feet
        raise InvalidInput(f"relabel: reconciler pid {lock.holder()} is running on this store; retry when it is done")
    try:
        rev = StoreControl(store, args.namespace).relabel(args.dataset, dict(zip(args.id, args.label)), args.by)
        print(f"dataset.shardwise.io/{args.dataset} revision {rev}", file=sys.stderr)
    finally:
        lock.release()
    if args.no_wait:
        return 0
    _reconcile(args, store)
    for m in reg.list(ShardedModel):
        if m.spec.datasetRef == args.dataset and m.status:
            print(f"{m.name}: version {m.status.publishedVersion}, accuracy {m.status.accuracy}")
    return 0


def _relabel_in_cluster(args) -> int:
    """File the fixes as one Correction in the kube context user's name, wait for the operator to apply it,
    then for every model on the Dataset to publish and evaluate a version on that revision."""
    from shardwise.api.correction import Correction, CorrectionSpec, LabelFix
    from shardwise.control import StoreControl

    store, reg = _session(args)
    user = reg.cluster.whoami()
    if args.by is not None and args.by != user:
        raise InvalidInput(f"--by: in a cluster a correction is made as the kube context's user ({user}), "
                           f"not {args.by!r}")
    reg.require(Dataset, args.dataset)
    labels = dict(zip(args.id, args.label))
    StoreControl(store, args.namespace).check_relabel(args.dataset, labels)  # refused here, before any object
    spec = CorrectionSpec(datasetRef=args.dataset, author=user,
                          relabel=[LabelFix(id=i, label=lab) for i, lab in labels.items()])
    made = reg.create(Correction(kind="Correction", metadata={"name": "pending"}, spec=spec),
                      generate_name=f"{args.dataset}-")
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"correction.shardwise.io/{made.name} created (author {user})")
    if args.no_wait:
        return 0
    deadline = time.monotonic() + args.timeout
    c = reg.wait(Correction, made.name, lambda c: c.status is not None and c.status.phase in ("Applied", "Failed"),
                 args.timeout)
    if c is None or c.status is None or c.status.phase != "Applied":
        why = c.status.message if c is not None and c.status is not None else "the operator has not applied it"
        raise InvalidInput(f"Correction {made.name} is {c.status.phase if c and c.status else 'Pending'}: {why}")
    rev = c.status.datasetRevision
    print(f"dataset.shardwise.io/{args.dataset} revision {rev}", file=sys.stderr)
    seen: dict[str, str] = {}
    while True:  # every model on the Dataset: a version on this revision, evaluated
        models = [m for m in reg.list(ShardedModel) if m.spec.datasetRef == args.dataset]
        waiting = [m for m in models if not _caught_up(m, rev)]
        for m in models:
            line = f"{m.status.phase} ({m.status.shardsReadyText} shards ready)" if m.status else "Pending"
            if seen.get(m.name) != line:
                seen[m.name] = line
                say(f"shardedmodel/{m.name}: {line}")
        failed = [m for m in waiting if m.status is not None and m.status.phase == "Failed"]
        if failed or not waiting or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for m in models:
        if m.status:
            print(f"{m.name}: version {m.status.publishedVersion}, accuracy {m.status.accuracy}")
    if failed or waiting:
        names = ", ".join(f"{m.name} ({m.status.phase if m.status else 'Pending'})" for m in failed or waiting)
        print(f"error: not retrained on revision {rev}: {names}", file=sys.stderr)
        return 1
    return 0


def _caught_up(m: ShardedModel, revision: int) -> bool:
    st = m.status
    return (st is not None and st.phase == "Ready" and (st.datasetRevision or 0) >= revision
            and st.accuracyVersion == st.publishedVersion)


def cmd_predict(args) -> int:
    from shardwise.predict import predict_file

    store, reg = _session(args)
    model = reg.require(ShardedModel, args.model)
    for row in predict_file(store, args.namespace, model, Path(args.file)):
        print(json.dumps(row))
    return 0


def cmd_reconcile(args) -> int:
    store, _ = _session(args, create=True)
    _reconcile(args, store)
    return 0


def cmd_verify(args) -> int:
    from shardwise.verify import verify_ledger

    store, reg = _session(args)
    problems, checked = verify_ledger(store, args.namespace, args.request)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"{checked} certificate(s) checked, {len(problems)} problem(s)")
    if not args.scan:
        return 1 if problems else 0
    from shardwise.purge_scan import load_models, scan_for_forgotten

    report = scan_for_forgotten(store, args.namespace, reg.list(ShardedModel) + load_models(args.models))
    for f in report.findings:
        print(f"FAIL {f}", file=sys.stderr)
    for k in report.unchecked:
        print(f"unchecked (no known kind, or too large to read for names): {k}", file=sys.stderr)
    for k in report.retained:
        print(f"retained by design: {k} (a ForgetRequest or Correction names its samples; delete it once its "
              "certificate is kept, or once applied)", file=sys.stderr)
    forgotten = ", ".join(f"{d}: {n}" for d, n in sorted(report.forgotten.items())) or "none"
    print(f"scan: {report.objects} object(s), {report.versions} stored version(s), {report.delete_markers} delete "
          f"marker(s) under {args.namespace}/ against forgotten samples ({forgotten}): "
          f"{len(report.findings)} finding(s), {len(report.unchecked)} unchecked, "
          f"{len(report.retained)} ForgetRequest(s) or Correction(s) naming forgotten samples")
    return 1 if problems or report.findings else 0


def cmd_crds(args) -> int:
    from shardwise.api.crds import write_crds

    try:
        paths = write_crds(Path(args.out))
    except OSError as e:
        raise InvalidInput(f"--out {args.out}: cannot write there: {e.strerror or e}") from None
    for path in paths:
        print(path)
    return 0


def cmd_operator(args) -> int:
    import kopf

    import shardwise.kube.handlers  # noqa: F401  (registers the handlers)
    from shardwise.kube.settings import OperatorSettings

    conf = OperatorSettings.from_env()
    # what `kopf run` does before running: INFO (or DEBUG) logs of kopf and of Shardwise, in that format
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if args.metrics_port is not None:
        from shardwise.kube import metrics

        metrics.serve(args.metrics_port)
    kopf.run(standalone=True, clusterwide=not conf.watch_namespaces, namespaces=conf.watch_namespaces,
             liveness_endpoint=args.liveness)
    return 0


def cmd_demo(args) -> int:
    from shardwise.demo import run_demo

    summary = run_demo(shards=args.shards, slices=args.slices, owner=args.owner, parallel=args.parallel,
                       store_uri=None if args.store == DEFAULT_STORE else args.store, as_json=args.json)
    return 0 if summary["exact"] else 1


def cmd_report(args) -> int:
    from shardwise.report import load_report, render

    out = Path(args.out or f"{args.experiment}.html")
    if out.suffix.lower() == ".json":
        raise InvalidInput(f"--out {out}: the JSON is written beside the HTML with the suffix .json; name the "
                           "HTML file (e.g. report.html)")
    store, reg = _session(args)
    inputs = load_report(store, args.namespace, args.experiment, reg)
    for w in inputs.warnings:
        print(f"warning: {w}", file=sys.stderr)
    page = render(inputs)
    doc = json.dumps(inputs.document(), indent=1, sort_keys=True)
    try:
        out.write_text(page, encoding="utf-8")
        out.with_suffix(".json").write_text(doc + "\n", encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"--out {out}: cannot write there: {e.strerror or e}") from None
    print(out)
    print(out.with_suffix(".json"))
    return 0


def cmd_ui(args) -> int:
    import getpass

    from shardwise.ui.server import make_server, serve

    try:
        user = args.user or ("" if _in_cluster(args) else getpass.getuser())
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container)
        raise InvalidInput("--user: the OS user has no name here; pass --user WHO") from None
    store, reg = _session(args)
    fixes = None
    if _in_cluster(args):  # every fix a Correction in the kube context user's name
        from shardwise.ui.fixes import ClusterFixes

        fixes = ClusterFixes(reg)
        if args.user is not None and args.user != fixes.user:
            raise InvalidInput(f"--user: in a cluster fixes are made as the kube context's user ({fixes.user}), "
                               f"not {args.user!r}")
        user = fixes.user

    def log(m: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)
    serve(make_server(store, args.namespace, user, args.experiment, args.host, args.port, log=log, fixes=fixes))
    return 0


COMMANDS = {
    "apply": cmd_apply, "get": cmd_get, "describe": cmd_describe, "delete": cmd_delete, "forget": cmd_forget,
    "predict": cmd_predict, "relabel": cmd_relabel, "reconcile": cmd_reconcile, "verify": cmd_verify,
    "crds": cmd_crds, "demo": cmd_demo, "ui": cmd_ui, "report": cmd_report,
    "operator": cmd_operator,
}


def _refuse_dashdash_values(args) -> None:
    """argparse reads `--opt=--` as an empty list (it drops the "--" it takes for the end of
    the options); refuse it naming the option rather than fail later on a list."""
    for k, v in vars(args).items():
        if v == [] and k != "models" or isinstance(v, list) and [] in v:
            raise InvalidInput(f"--{k.replace('_', '-')}: '--' is not a value here")


# What the local body alone does: in a cluster kubectl applies and deletes, and the operator reconciles.
LOCAL_ONLY = ("apply", "delete", "forget", "reconcile", "demo")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _refuse_dashdash_values(args)
        if _in_cluster(args) and args.cmd in LOCAL_ONLY:
            raise InvalidInput(f"--cluster: `shardwise {args.cmd}` works on the local body only; in a cluster use "
                               "kubectl (apply -f, delete) and the operator reconciles")
        return COMMANDS[args.cmd](args)
    except ShardwiseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: work done so far is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
