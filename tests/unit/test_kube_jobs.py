"""The pure builders of trainer Jobs: what every training and evaluation Job must carry."""

from __future__ import annotations

import pytest

from shardwise.brain.lineage import CheckpointRef
from shardwise.brain.model import StartJob
from shardwise.kube.jobs import TrainerSettings, build_evaluation_job, build_training_job
from tests.helpers import model

S = TrainerSettings(image="shardwise/trainer:0.1.0-cuda", store_uri="s3://shardwise", s3_endpoint="http://s3:8333",
                    s3_secret="shardwise-s3", gpu_tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},))
PARENT = CheckpointRef(2, 0, "ns/models/m/u/shard-2/slice-0/r000001/checkpoint", "a", "b", ("f",), (1,))


def gpu_model(**resources):
    m = model("m", shards=4, slices=3, resources={"gpus": 1, "nodeSelector": {"pool": "gpu"},
                                                  "priorityClassName": "batch-low", "queueName": "team-a", **resources})
    m.metadata.uid, m.metadata.namespace = "uid-1", "tenant-a"
    return m


def test_training_job_carries_the_work_the_gpu_and_the_owner():
    job = build_training_job(gpu_model(), StartJob("m-s2-r5-f1", 2, 1, 5, PARENT, (PARENT,), "retrain"), "req", S)
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "m-s2-r5-f1" and meta["namespace"] == "tenant-a"
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "shardwise", "shardwise.io/model": "m",
                              "shardwise.io/shard": "2", "shardwise.io/purpose": "retrain",
                              "kueue.x-k8s.io/queue-name": "team-a"}
    assert meta["ownerReferences"] == [{"apiVersion": "shardwise.io/v1alpha1", "kind": "ShardedModel", "name": "m",
                                        "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["train", "--store", "s3://shardwise", "--request", "req", "--shard", "2", "--from-slice", "1",
                         "--to-slice", "2", "--parent", PARENT.key]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"pool": "gpu"} and pod["priorityClassName"] == "batch-low"
    assert {"key": "nvidia.com/gpu", "operator": "Exists"} in pod["tolerations"]
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 6 * 3600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob",
                        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2]}}
    assert rules[1]["action"] == "Ignore" \
        and rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert pod["restartPolicy"] == "Never"


def test_trainer_pods_run_with_least_privilege():
    job = build_training_job(gpu_model(), StartJob("j", 0, 0, 1, None, (), "train"), "req", S)
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "shardwise-s3",
                                                                         "key": "AWS_SECRET_ACCESS_KEY"}
    assert "--parent" in c["args"] and c["args"][c["args"].index("--parent") + 1] == "none"


def test_cpu_jobs_get_no_gpu_and_no_gpu_tolerations():
    m = model("m")
    m.metadata.uid = "u"
    job = build_training_job(m, StartJob("j", 0, 0, 1, None, (), "train"), "req", S)
    pod = job["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pod and "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_evaluation_job():
    job = build_evaluation_job(gpu_model(), 7, "evreq", S)
    assert job["metadata"]["name"] == "m-eval-v7" and job["metadata"]["labels"]["shardwise.io/purpose"] == "evaluate"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["evaluate", "--store", "s3://shardwise",
                                                                         "--request", "evreq"]


def test_jobs_validate_against_the_kubernetes_schema():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    for job in (build_training_job(gpu_model(), StartJob("m-s2-r5-f1", 2, 1, 5, PARENT, (PARENT,), "retrain"), "r", S),
                build_evaluation_job(gpu_model(), 1, "r", S)):
        kv.validate(job, "1.30.0", strict=True)


def test_image_pull_secrets_reach_the_trainer_pods_only_when_set():
    from dataclasses import replace

    start = StartJob("m-s2-r5-f1", 2, 1, 5, PARENT, (PARENT,), "retrain")
    assert "imagePullSecrets" not in build_training_job(gpu_model(), start, "r", S)["spec"]["template"]["spec"]
    job = build_training_job(gpu_model(), start, "r", replace(S, image_pull_secrets=("regcred",)))
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_a_queued_model_s_jobs_are_created_suspended_and_retrains_take_their_own_priority():
    start = StartJob("m-s2-r5-f1", 2, 1, 5, PARENT, (PARENT,), "retrain")
    first = StartJob("m-s2-r1-f0", 2, 0, 1, None, (), "train")
    m = gpu_model(retrainPriorityClassName="forget-first")
    retrain, train = build_training_job(m, start, "r", S), build_training_job(m, first, "r", S)
    assert retrain["spec"]["suspend"] is True and train["spec"]["suspend"] is True  # queueName: Kueue admits them
    assert retrain["spec"]["template"]["spec"]["priorityClassName"] == "forget-first"
    assert train["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
    unqueued = model("m", resources={"priorityClassName": "batch-low"})
    unqueued.metadata.uid = "u"
    job = build_training_job(unqueued, start, "r", S)
    assert "suspend" not in job["spec"] and job["spec"]["template"]["spec"]["priorityClassName"] == "batch-low"
