"""Operator settings from the environment (set by the Helm chart)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorSettings:
    trainer_image: str = "shardwise/trainer:0.1.0-cuda"
    s3_endpoint: str = ""
    bucket: str = "shardwise"
    prefix: str = ""
    s3_secret: str = "shardwise-s3"  # looked up in each tenant namespace
    watch_namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    backoff_limit: int = 3
    deadline_seconds: int = 6 * 3600
    gpu_tolerations: list[dict] = field(default_factory=list)
    image_pull_secrets: tuple[str, ...] = ()  # for the trainer Jobs' Pods (Secrets in each tenant namespace)
    # Development and tests only: one folder store for every namespace instead of S3.
    dev_store: str | None = None
    kube_host: str | None = None  # tests: the API server URL (kmock); else in-cluster or kubeconfig
    resync_seconds: float = 30.0
    # One active operator: the holder of this Lease acts, any other instance stands by (kube/leader.py).
    leader_election: bool = True  # off only where the API server has no Leases (the kmock tests)
    lease_namespace: str = "shardwise-system"  # the chart sets its release namespace
    lease_name: str = "shardwise-operator"

    @classmethod
    def from_env(cls) -> OperatorSettings:
        e = os.environ.get
        return cls(
            trainer_image=e("SHARDWISE_TRAINER_IMAGE", cls.trainer_image),
            s3_endpoint=e("SHARDWISE_S3_ENDPOINT", ""),
            bucket=e("SHARDWISE_STORE_BUCKET", cls.bucket),
            prefix=e("SHARDWISE_STORE_PREFIX", ""),
            s3_secret=e("SHARDWISE_S3_SECRET", cls.s3_secret),
            watch_namespaces=tuple(n for n in e("SHARDWISE_WATCH_NAMESPACES", "").split(",") if n),
            backoff_limit=int(e("SHARDWISE_TRAINER_BACKOFF_LIMIT", "3")),
            deadline_seconds=int(e("SHARDWISE_TRAINER_DEADLINE_SECONDS", str(6 * 3600))),
            gpu_tolerations=json.loads(e("SHARDWISE_GPU_TOLERATIONS", "[]")),
            image_pull_secrets=tuple(n for n in e("SHARDWISE_IMAGE_PULL_SECRETS", "").split(",") if n),
            dev_store=e("SHARDWISE_DEV_STORE") or None,
            kube_host=e("SHARDWISE_KUBE_HOST") or None,
            resync_seconds=float(e("SHARDWISE_RESYNC_SECONDS", "30")),
            leader_election=e("SHARDWISE_LEADER_ELECTION", "1") not in ("0", "false"),
            lease_namespace=e("SHARDWISE_LEASE_NAMESPACE", cls.lease_namespace),
            lease_name=e("SHARDWISE_LEASE_NAME", cls.lease_name),
        )

    def store_uri(self, namespace: str) -> str:
        """What the trainer Jobs of a namespace are told (their credentials come from the Secret)."""
        if self.dev_store:
            return self.dev_store
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
