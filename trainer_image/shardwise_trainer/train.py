"""Train one shard over slices r..R-1 from a checkpoint, writing one after every slice.

Determinism: every slice re-seeds from (seed, shard, slice), kernels are
deterministic, and the model and optimizer are rebuilt from the serialized
checkpoint at every slice boundary, so continuing from a stored checkpoint runs
exactly the same code as training straight through. A rollback-and-retrain is
therefore bit-identical to training that shard from scratch without the samples.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shardwise.api.jobs import TrainingRequest
from shardwise.api.model import ShardedModelSpec
from shardwise.brain.lineage import CheckpointRef, slice_fingerprints
from shardwise.datasets import DatasetStore, DatasetView
from shardwise.errors import Superseded
from shardwise.faults import fault_point
from shardwise.store.base import Store
from shardwise.store.layout import Layout
from shardwise_trainer.nets import build_net


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_deterministic(device: torch.device) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(1)  # shards run in parallel processes; one thread each is also deterministic


def derive_seed(*parts: int) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _optimizer(spec: ShardedModelSpec, params) -> torch.optim.Optimizer:
    t = spec.training
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.learningRate, momentum=t.momentum, weight_decay=t.weightDecay)
    return torch.optim.Adam(params, lr=t.learningRate, weight_decay=t.weightDecay, foreach=False)


@dataclass
class ShardData:
    features: torch.Tensor
    labels: torch.Tensor
    active: np.ndarray
    shard_of: np.ndarray
    slice_of: np.ndarray
    input_shape: tuple[int, ...]
    classes: int


def load_net(spec: ShardedModelSpec, view_shape: tuple[int, ...], classes: int, blob: bytes, device) -> torch.nn.Module:
    net = build_net(spec.architecture.kind, spec.architecture.hiddenUnits, view_shape, classes)
    ck = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    net.load_state_dict(ck["model"])
    return net.to(device).eval()


def train_shard(
    store: Store,
    request: TrainingRequest | dict[str, Any],
    progress: Callable[[int, float], None] = lambda s, secs: None,
) -> tuple[list[CheckpointRef], float]:
    """Run one job request (written by the control plane). Returns the new refs and compute seconds."""
    req = TrainingRequest.model_validate(request)
    layout = Layout(req.namespace)
    spec = req.spec
    shard, start, rev = req.shard, req.fromSlice, req.revision
    if not (0 <= shard < spec.shards and 0 <= start < spec.slices):
        raise ValueError(f"shard {shard} / fromSlice {start} outside the model's {spec.shards}x{spec.slices} grid")
    view: DatasetView = DatasetStore(store, layout).view(req.dataset, rev)
    by_owner = spec.groupBy == "owner"
    seed = spec.training.seed
    # Samples of this shard forgotten since `rev` are gone from the payload: revision `rev` can be read
    # as it was only for the slices before the first of them. Train those, never a mix; the reconciler
    # continues from there at the newer revision.
    lost = view.forgotten_since(rev, spec.shards, spec.slices, seed, by_owner)
    lost_slices = lost.slice[lost.shard == shard]
    stop = int(lost_slices.min()) if lost_slices.size else spec.slices
    why = (f"{lost_slices.size} sample(s) of shard {shard} (first in slice {stop}) at dataset revision {rev} were "
           f"forgotten since (revision {view.current})")
    if stop <= start:
        raise Superseded(f"{why}; nothing of this job can be trained at its revision")
    assignment = view.assignment(spec.shards, spec.slices, seed, by_owner)
    fps = slice_fingerprints(assignment, view.state, view.id_words)[shard]
    keep = [CheckpointRef.of(c) for c in req.keep]
    if len(keep) != start:
        raise ValueError(f"request keeps {len(keep)} checkpoints but starts at slice {start}")

    device = pick_device()
    set_deterministic(device)
    table = view.table
    X = torch.from_numpy(np.ascontiguousarray(table.features, dtype=np.float32))
    y = torch.from_numpy(view.state.labels.astype(np.int64))
    classes = len(table.class_names)
    input_shape = tuple(table.features.shape[1:])

    blob: bytes | None = store.get_verified(keep[-1].key, keep[-1].sha256) if keep else None
    lineage_fp = list(keep[-1].fingerprints) if keep else []
    lineage_rev = list(keep[-1].revisions) if keep else []
    refs: list[CheckpointRef] = []
    compute = 0.0
    for s in range(start, stop):
        t0 = time.perf_counter()
        torch.manual_seed(derive_seed(spec.training.seed, shard, 0))
        net = build_net(spec.architecture.kind, spec.architecture.hiddenUnits, input_shape, classes).to(device)
        opt = _optimizer(spec, net.parameters())
        if blob is not None:
            ck = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        idx = assignment.members(shard, upto_slice=s)
        idx = view.order(idx[view.state.active[idx]])  # by id word: the same order for any row order
        # Each slice step costs the same: an "epoch" is as many samples as the new slice
        # holds, drawn from every slice so far. A shard's whole training then costs what
        # training it without slices would (epochsPerSlice passes over its data), and a
        # retrain from slice r costs (R - r) / R of that: the SISA cost model.
        new = int((view.state.active & (assignment.shard == shard) & (assignment.slice == s)).sum())
        xs, ys = X[idx].to(device), y[idx].to(device)
        gen = torch.Generator().manual_seed(derive_seed(spec.training.seed, shard, s + 1))
        net.train()
        bs = spec.training.batchSize
        for epoch in range(spec.training.epochsPerSlice):
            if epoch == spec.training.epochsPerSlice // 2:
                fault_point("trainer.mid-slice")
            order = torch.randperm(len(idx), generator=gen)[:new].to(device)
            for b in range(0, new, bs):
                sel = order[b : b + bs]
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(net(xs[sel]), ys[sel])
                loss.backward()
                opt.step()
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        buf = io.BytesIO()
        torch.save({"model": state, "optimizer": opt.state_dict(), "rng": gen.get_state(),
                    "meta": {"shard": shard, "slice": s, "revision": rev}}, buf)
        blob = buf.getvalue()
        compute += time.perf_counter() - t0

        lineage_fp.append(fps[s])
        lineage_rev.append(rev)
        key = layout.checkpoint(req.model, req.uid, shard, s, rev)
        sha = store.put_verified(key, blob)  # atomic: never visible half-written
        fault_point("trainer.after-checkpoint")
        ref = CheckpointRef(shard, s, key, sha, weights_sha256(state), tuple(lineage_fp), tuple(lineage_rev))
        store.put_json(layout.checkpoint_meta(key), ref.to_dict())
        refs.append(ref)
        progress(s, compute)
        fault_point("trainer.after-slice")
    if stop < spec.slices:
        raise Superseded(f"{why}; stopped after slice {stop - 1}", refs, compute)
    return refs, compute


def predict_proba(store: Store, spec: ShardedModelSpec, chains_final: list[CheckpointRef],
                  features: np.ndarray, classes: int) -> np.ndarray:
    """(S, N, C) softmax outputs of every shard's final checkpoint."""
    device = pick_device()
    X = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    out = []
    with torch.no_grad():
        for ref in chains_final:
            net = load_net(spec, tuple(features.shape[1:]), classes, store.get_verified(ref.key, ref.sha256), device)
            out.append(torch.softmax(net(X), dim=1).cpu().numpy())
    return np.stack(out)
