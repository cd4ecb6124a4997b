"""Entrypoint: `python -m shardwise_trainer train --store URI --request KEY`.

This is the very command a Kubernetes Job runs. Exit codes: 0 done, 2 bad
configuration (do not retry), 1 anything else (may be retried).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

EXIT_BAD_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="shardwise_trainer")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one shard over a slice range")
    t.add_argument("--store", required=True, help="store URI (folder or s3://bucket/prefix)")
    t.add_argument("--request", required=True, help="store key of the job request")
    # Optional, for people reading `kubectl describe job`: checked against the request.
    t.add_argument("--shard", type=int)
    t.add_argument("--from-slice", type=int)
    t.add_argument("--to-slice", type=int)
    t.add_argument("--parent", help="key of the starting checkpoint, or 'none'")
    e = sub.add_parser("evaluate", help="held-out accuracy of a published model version")
    e.add_argument("--store", required=True)
    e.add_argument("--request", required=True, help="store key of the evaluation request")
    args = p.parse_args(argv)
    if args.cmd == "evaluate":
        return _evaluate(args)

    from pydantic import ValidationError

    from shardwise.api.jobs import JobStatus, TrainingRequest
    from shardwise.api.validation import describe_validation
    from shardwise.errors import CorruptObject, ShardwiseError, Superseded
    from shardwise.store import open_store
    from shardwise.store.layout import Layout

    store = open_store(args.store)
    t0 = time.time()
    try:
        doc = store.get_json(args.request)
    except ShardwiseError as e:
        print(f"trainer: cannot read job request: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        request = TrainingRequest.model_validate(doc)
    except ValidationError as e:  # written by another version of the control plane, or by hand
        print(f"trainer: bad configuration: job request {args.request}: {describe_validation(e)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    status_key = Layout(request.namespace).job_status(request.model, request.uid, request.job)

    def report(status: JobStatus) -> None:
        store.put_json(status_key, status.to_doc())

    mismatch = _check_args(args, request)
    if mismatch:
        report(JobStatus(state="failed", message=f"bad configuration: {mismatch}"))
        print(f"trainer: bad configuration: {mismatch}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    def progress(s: int, compute: float) -> None:
        print(json.dumps({"job": request.job, "sliceDone": s, "computeSeconds": round(compute, 3)}), flush=True)
        report(JobStatus(state="running", slicesDone=s + 1 - request.fromSlice))

    from shardwise_trainer.train import train_shard

    try:
        refs, compute = train_shard(store, request, progress)
    except CorruptObject as e:  # retrying would read the same bytes: fail, and let the reconciler rebuild it
        report(JobStatus(state="failed", message=str(e), corrupt=e.key))
        print(f"trainer: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except Superseded as e:  # not to be retried: the reconciler plans again at the newer revision
        print(f"trainer: superseded: {e}", file=sys.stderr)
        if not e.refs:
            report(JobStatus(state="failed", message=f"superseded: {e}", superseded=True))
            return EXIT_BAD_CONFIG
        # the slices it could train are exact for its revision: a shorter chain, which the reconciler extends
        report(JobStatus(state="succeeded", chain=request.keep + [r.checkpoint() for r in e.refs],
                         computeSeconds=e.compute, wallSeconds=time.time() - t0, message=f"superseded: {e}"))
        return 0
    except (ValueError, ValidationError) as e:
        report(JobStatus(state="failed", message=f"bad configuration: {e}"))
        print(f"trainer: bad configuration: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except Exception as e:  # reported in the job status, then a retryable failure
        traceback.print_exc()
        report(JobStatus(state="failed", message=f"{type(e).__name__}: {e}"))
        return 1
    report(JobStatus(state="succeeded", chain=request.keep + [r.checkpoint() for r in refs],
                     computeSeconds=compute, wallSeconds=time.time() - t0))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from shardwise.api.jobs import EvaluationRequest
    from shardwise.api.validation import describe_validation
    from shardwise.errors import ShardwiseError
    from shardwise.store import open_store
    from shardwise_trainer.evaluate import evaluate_version

    try:
        store = open_store(args.store)
        request = EvaluationRequest.model_validate(store.get_json(args.request))
        result = evaluate_version(store, request)
    except ValidationError as e:
        print(f"trainer: bad configuration: evaluation request {args.request}: {describe_validation(e)}",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    except ShardwiseError as e:
        print(f"trainer: evaluation failed: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    # an Experiment's full report is in the store; the Job's log gets its headline
    head = ("experiment", "version", "split", "samples", "accuracy", "predictionsKey")
    print(json.dumps({k: v for k, v in result.items() if k in head or "experiment" not in result}), flush=True)
    return 0


def _check_args(args: argparse.Namespace, request) -> str | None:
    parent = request.parent.key if request.parent else "none"
    last = request.spec.slices - 1
    for flag, given, want in (("--shard", args.shard, request.shard), ("--from-slice", args.from_slice,
                              request.fromSlice), ("--to-slice", args.to_slice, last),
                              ("--parent", args.parent, parent)):
        if given is not None and str(given) != str(want):
            return f"{flag} {given} does not match the job request ({want})"
    return None


if __name__ == "__main__":
    sys.exit(main())
