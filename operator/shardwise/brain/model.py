"""Reconcile a ShardedModel: observed state in, actions and status out. Pure.

One rule covers first training, forgetting and relabelling alike: every shard
must end with a chain of checkpoints whose lineage matches the current dataset
revision. Where it does not, the shard is retrained from the first stale slice.
When every shard is current, the chains are published as one new version; then
whatever still holds forgotten samples is purged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shardwise.api.model import ShardedModelSpec, ShardedModelStatus
from shardwise.brain.lineage import Chain, CheckpointRef, plan_shard
from shardwise.brain.versions import STARTED, JobRecord, VersionManifest, job_name


# -- actions -------------------------------------------------------------------
@dataclass(frozen=True)
class StartJob:
    name: str
    shard: int
    from_slice: int
    revision: int
    parent: CheckpointRef | None
    keep: Chain
    purpose: str  # "train" (first time) or "retrain"


@dataclass(frozen=True)
class Publish:
    manifest: VersionManifest


@dataclass(frozen=True)
class Purge:
    """Remove what still holds samples forgotten up to `revision` (after a publish)."""

    revision: int


@dataclass(frozen=True)
class Evaluate:
    version: int


Action = StartJob | Publish | Purge | Evaluate


@dataclass(frozen=True)
class ModelObservation:
    name: str
    spec: ShardedModelSpec
    status: ShardedModelStatus
    generation: int | None
    revision: int | None  # current revision of the Dataset; None while it is not ready
    fingerprints: list[list[str]] | None  # [shard][slice] at that revision
    published: VersionManifest | None
    jobs: list[JobRecord] = field(default_factory=list)
    purged_revision: int = 0  # highest revision whose purge has been carried out
    evaluated_version: int | None = None
    corrupt: frozenset[str] = frozenset()  # checkpoint keys a job found corrupt and that are still corrupt
    dataset_problem: tuple[str, str] | None = None  # (reason, message) when the Dataset is missing or failed
    # training samples per shard and the smallest/largest slice (Assignment.spread)
    spread: dict[str, Any] | None = None


MIN_PER_SLICE = 10  # below this many training samples a slice on average, a spec is warned about


def evaluation_job_name(model: str, version: int) -> str:
    """The held-out evaluation of a published version (a Job name: 63 characters at most)."""
    suffix = f"-eval-v{version}"
    return model[: 63 - len(suffix)] + suffix


def placement_warning(spread: dict[str, Any], shards: int, slices: int) -> str | None:
    """Why a spec leaves shards or slices (nearly) empty on this Dataset, or None.

    Hash placement spreads samples like a multinomial: with a few samples per slice some slices
    get none. An empty shard does not vote; an empty slice trains nothing new."""
    per_shard = spread["shardSamples"]
    total = sum(per_shard)
    problems = []
    if spread["emptyShards"]:
        problems.append(f"shard(s) {', '.join(map(str, spread['emptyShards'][:10]))} have no training sample "
                        "and do not vote")
    per_slice = total / (shards * slices)
    if per_slice < MIN_PER_SLICE or spread["sliceMin"] == 0:
        problems.append(f"{total} training sample(s) over {shards} x {slices} slices is {per_slice:.1f} per slice "
                        f"(smallest slice {spread['sliceMin']}, largest {spread['sliceMax']}); "
                        "use fewer shards or slices")
    return "; ".join(problems) or None


def _latest_chain(shard: int, published: VersionManifest | None, jobs: list[JobRecord]) -> Chain | None:
    """The newest complete chain known for a shard: a finished job's, else the published one."""
    done = [j for j in jobs if j.shard == shard and j.state == "succeeded" and j.chain]
    if done:
        best = max(done, key=lambda j: (j.revision, j.from_slice))
        if published is None or best.revision >= published.revision:
            return best.chain
    return published.chains[shard] if published else None


def reconcile_model(obs: ModelObservation) -> tuple[list[Action], ShardedModelStatus]:
    spec = obs.spec
    status = obs.status.model_copy(deep=True)
    status.observedGeneration = obs.generation
    status.shards = spec.shards
    actions: list[Action] = []

    if obs.dataset_problem is not None or obs.revision is None or obs.fingerprints is None:
        reason, msg = obs.dataset_problem or ("DatasetNotReady", f"waiting for Dataset {spec.datasetRef!r}")
        status.phase = "Pending" if obs.published is None else status.phase
        status.set_condition("Ready", "True" if obs.published else "False", reason, msg)
        if obs.published is None:
            status.shardsReady = 0
            status.shardsReadyText = f"0/{spec.shards}"
        return actions, status

    if obs.spread is not None:
        status.placement = obs.spread
        sparse = placement_warning(obs.spread, spec.shards, spec.slices)
        if not any(obs.spread["shardSamples"]):
            msg = (f"no shard has a training sample: the Dataset's training split has "
                   f"{sum(obs.spread['shardSamples'])} active sample(s) for {spec.shards} shard(s)")
            status.phase = "Failed"
            status.set_condition("Ready", "False", "NoTrainingSamples", msg)
            status.set_condition("Failed", "True", "NoTrainingSamples", msg)
            return actions, status
        if sparse:
            status.set_condition("PlacementSparse", "True", "FewSamples", sparse)
        elif status.condition("PlacementSparse") is not None:
            status.set_condition("PlacementSparse", "False", "Balanced", "")

    running = {j.shard: j for j in obs.jobs if j.state in STARTED}  # started: running, or held for admission
    held = [j.name for j in obs.jobs if j.state == "waiting"]
    failed = {j.name: j for j in obs.jobs if j.state == "failed"}
    chains: list[Chain | None] = []
    launch: list[StartJob] = []
    errors: list[str] = []
    work: list[dict[str, int]] = []
    rebuilding: list[str] = []
    for k in range(spec.shards):
        chain = _latest_chain(k, obs.published, obs.jobs)
        plan = plan_shard(k, chain, obs.fingerprints[k], obs.corrupt)
        if plan is None:
            chains.append(chain)
            continue
        chains.append(None)
        bad = [ref.key for ref in chain or () if ref.key in obs.corrupt]
        if bad:
            rebuilding.append(f"shard {k}: checkpoint {bad[0]} failed its sha256 check; rebuilding from "
                              + (f"slice {plan.from_slice} (the previous good checkpoint)" if plan.parent
                                 else "scratch (it was the first slice)"))
        if k in running:  # one job per shard: later changes wait for it and coalesce
            work.append({"shard": k, "fromSlice": running[k].from_slice, "slicesDone": running[k].slices_done})
            continue
        name = job_name(obs.name, k, obs.revision, plan.from_slice)
        if name in failed:
            errors.append(f"shard {k}: job {name} failed: {failed[name].message}")
            continue
        purpose = "retrain" if obs.published is not None else "train"
        launch.append(StartJob(name, k, plan.from_slice, obs.revision, plan.parent, plan.keep, purpose))
        work.append({"shard": k, "fromSlice": plan.from_slice})

    # Waiting shards keep their place in the queue; newer requests fold into them.
    actions.extend(launch[: max(0, spec.maxParallelShards - len(running))])

    ready = [c for c in chains if c is not None]
    status.shardsReady = len(ready)
    status.shardsReadyText = f"{len(ready)}/{spec.shards}"
    status.retraining = work
    if rebuilding:
        status.set_condition("CheckpointCorrupt", "True", "Rebuilding", "; ".join(rebuilding))
    else:
        was = next((c for c in status.conditions if c.type == "CheckpointCorrupt" and c.status == "True"), None)
        if was is not None:  # keep what happened on record, now as resolved
            status.set_condition("CheckpointCorrupt", "False", "Rebuilt", "done: " + was.message)

    if errors:
        status.phase = "Failed"
        status.set_condition("Ready", "False" if obs.published is None else "True", "TrainingFailed", "; ".join(errors))
        status.set_condition("Failed", "True", "TrainingFailed", "; ".join(errors))
        return actions, status
    status.conditions = [c for c in status.conditions if c.type != "Failed"]

    if len(ready) == spec.shards:
        complete = tuple(ready)
        pub = obs.published
        if pub is None or tuple(pub.chains) != complete:
            version = 1 if pub is None else pub.version + 1
            counts = tuple(obs.spread["shardSamples"]) if obs.spread is not None else None
            actions.append(Publish(VersionManifest(version, obs.revision, complete, shard_samples=counts)))
            status.phase = "Publishing"
            status.set_condition("Progressing", "True", "Publishing", f"publishing version {version}")
            return actions, status
        status.publishedVersion = pub.version
        status.datasetRevision = obs.revision
        if obs.purged_revision < obs.revision:
            actions.append(Purge(obs.revision))
            status.phase = "Purging"
            status.set_condition("Progressing", "True", "Purging", "removing checkpoints that hold forgotten samples")
            return actions, status
        if obs.evaluated_version != pub.version:
            actions.append(Evaluate(pub.version))
        status.phase = "Ready"
        status.set_condition("Ready", "True", "Published", f"version {pub.version} at dataset revision {obs.revision}")
        status.set_condition("Progressing", "False", "Idle", "")
        return actions, status

    if obs.published is None:
        status.phase = "Training"
        status.set_condition("Ready", "False", "Training", f"{len(ready)}/{spec.shards} shards trained")
    else:
        status.phase = "Retraining"
        status.publishedVersion = obs.published.version
        status.set_condition(
            "Ready", "True", "Serving", f"version {obs.published.version} serves while {len(work)} shard(s) retrain"
        )
    if held and not any(j.state == "running" for j in obs.jobs):
        status.phase = "WaitingForAdmission"
        status.set_condition("Progressing", "True", "WaitingForAdmission",
                             f"{len(held)} Job(s) wait for admission by the queue: {', '.join(held[:5])}")
        return actions, status
    status.set_condition("Progressing", "True", status.phase, f"{len(work)} shard(s) in work")
    return actions, status
