"""Pure builders of the batch/v1 Jobs the kube body creates (no I/O, no client).

A training Job runs the same entrypoint the local body runs as a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shardwise.api.common import Resource
from shardwise.api.model import ShardedModel
from shardwise.brain.experiment import experiment_job_name
from shardwise.brain.model import StartJob, evaluation_job_name

EXIT_BAD_CONFIG = 2  # the trainer's exit code for a configuration error: never retried
TRAINER_UID = 10001


@dataclass(frozen=True)
class TrainerSettings:
    """Operator-wide settings (Helm values) that go into every training Job."""

    image: str
    store_uri: str  # s3://bucket/prefix
    s3_endpoint: str
    s3_secret: str  # Secret in the tenant's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    backoff_limit: int = 3
    active_deadline_seconds: int = 6 * 3600
    ttl_seconds_after_finished: int = 24 * 3600
    gpu_tolerations: tuple[dict[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()  # Secret names, looked up in the Job's (tenant's) namespace


def job_labels(model: str, shard: int, purpose: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/managed-by": "shardwise",
        "shardwise.io/model": model,
        "shardwise.io/purpose": purpose,
    }
    if shard >= 0:
        labels["shardwise.io/shard"] = str(shard)
    return labels


def build_evaluation_job(model: ShardedModel, version: int, request_key: str, s: TrainerSettings) -> dict[str, Any]:
    """Held-out evaluation of a published version: the same pod shape as training."""
    return _job(model, evaluation_job_name(model.name, version), job_labels(model.name, -1, "evaluate"),
                ["evaluate", "--store", s.store_uri, "--request", request_key], s)


def build_experiment_job(model: ShardedModel, experiment: Resource, version: int, request_key: str,
                         s: TrainerSettings) -> dict[str, Any]:
    """An Experiment's test run: the evaluation entrypoint on the model's resources.

    Owned by the Experiment (deleting it removes its Job); labelled with the model as well,
    so the model's Job watch sees it finish.
    """
    labels = job_labels(model.name, -1, "experiment") | {"shardwise.io/experiment": experiment.name}
    return _job(model, experiment_job_name(experiment.name, version), labels,
                ["evaluate", "--store", s.store_uri, "--request", request_key], s, owner=experiment)


def build_training_job(model: ShardedModel, start: StartJob, request_key: str, s: TrainerSettings) -> dict[str, Any]:
    args = [
        "train", "--store", s.store_uri, "--request", request_key,
        "--shard", str(start.shard), "--from-slice", str(start.from_slice), "--to-slice",
        str(model.spec.slices - 1), "--parent", start.parent.key if start.parent else "none",
    ]
    return _job(model, start.name, job_labels(model.name, start.shard, start.purpose), args, s)


def _job(model: ShardedModel, name: str, labels: dict[str, str], args: list[str], s: TrainerSettings,
         owner: Resource | None = None) -> dict[str, Any]:
    res = model.spec.resources
    owner = owner or model
    labels = dict(labels)
    if res.queueName:
        labels["kueue.x-k8s.io/queue-name"] = res.queueName
    limits: dict[str, str] = {"memory": res.memory}
    if res.gpus:
        limits["nvidia.com/gpu"] = str(res.gpus)
    container = {
        "name": "trainer",
        "image": s.image,
        "args": args,
        "env": [
            {"name": "SHARDWISE_S3_ENDPOINT", "value": s.s3_endpoint},
            {"name": "AWS_ACCESS_KEY_ID",
             "valueFrom": {"secretKeyRef": {"name": s.s3_secret, "key": "AWS_ACCESS_KEY_ID"}}},
            {"name": "AWS_SECRET_ACCESS_KEY",
             "valueFrom": {"secretKeyRef": {"name": s.s3_secret, "key": "AWS_SECRET_ACCESS_KEY"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}, "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # required by podFailurePolicy
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": TRAINER_UID, "runAsGroup": TRAINER_UID, "fsGroup": TRAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if res.nodeSelector:
        pod_spec["nodeSelector"] = dict(res.nodeSelector)
    tolerations = list(res.tolerations) + (list(s.gpu_tolerations) if res.gpus else [])
    if tolerations:
        pod_spec["tolerations"] = tolerations
    priority = (res.retrainPriorityClassName if labels.get("shardwise.io/purpose") == "retrain" else None) \
        or res.priorityClassName
    if priority:
        pod_spec["priorityClassName"] = priority
    if s.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in s.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": model.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            # with a Kueue queue: created suspended, as Kueue expects; it unsuspends the Job on admission
            **({"suspend": True} if res.queueName else {}),
            "backoffLimit": s.backoff_limit,
            "activeDeadlineSeconds": s.active_deadline_seconds,
            "ttlSecondsAfterFinished": s.ttl_seconds_after_finished,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [EXIT_BAD_CONFIG]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def owner_reference(owner: Resource) -> dict[str, Any]:
    """The owner's controller reference: deleting the owner deletes what carries it."""
    return {"apiVersion": owner.apiVersion, "kind": owner.kind, "name": owner.name,
            "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}


def build_experiment_model_body(experiment: Resource, model: ShardedModel) -> dict[str, Any]:
    """The ShardedModel custom object an Experiment with spec.train creates, owned by the Experiment."""
    doc = model.to_doc()
    doc["metadata"] = {"name": model.name, "namespace": model.namespace, "labels": dict(model.metadata.labels),
                       "ownerReferences": [owner_reference(experiment)]}
    doc.pop("status", None)
    return doc
