"""The stand-in kubelet runs real training processes for simulated pods, end to end.

No operator here: two hand-written pods of a job. This proves the harness the spot drills rely on
(env resolution, pod DNS and FSx stand-ins, outcomes reported back through kwok) and the runtime's
SIGTERM path through a real pod deletion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_kubelet import LocalKubelet

from cluster import Cluster
from kubetrain.api.constants import (
    ENV_CHECKPOINT_DIR,
    ENV_JOB,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    EXIT_CHECKPOINTED_AND_STOPPED,
    LABEL_ATTEMPT,
    LABEL_JOB,
)
from support import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
TOY = Path(__file__).with_name("toy_train.py")


def rank_pod(job: str, rank: int, world: int) -> dict[str, Any]:
    env = [
        {"name": "NODE_RANK", "value": str(rank)},
        {"name": "NNODES", "value": str(world)},
        {"name": ENV_JOB, "value": job},
        {"name": ENV_CHECKPOINT_DIR, "value": f"/fsx/checkpoints/{job}"},
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": ENV_POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job}-1-{rank}", "labels": {LABEL_JOB: job, LABEL_ATTEMPT: "1"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 60,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "trainer",
                    "image": "train:1",
                    "env": env,
                    "resources": {"requests": {"cpu": "1"}},
                }
            ],
        },
    }


def phase(cluster: Cluster, ns: str, pod: str) -> str:
    return str(cluster.get("pod", pod, "-n", ns)["status"].get("phase"))


def test_two_ranks_train_to_completion(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    docs = [rank_pod("toy", r, 2) for r in range(2)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    env = {"TOY_STEPS": "30", "TOY_STEP_SECONDS": "0", "TOY_EVERY": "10"}
    with LocalKubelet(cluster, namespace, "toy", TOY, tmp_path, extra_env=env) as kubelet:
        for r in range(2):
            wait_for(
                lambda r=r: phase(cluster, namespace, f"toy-1-{r}") == "Succeeded",
                timeout=90,
                what=f"rank {r} Succeeded",
            )
        assert not kubelet.errors
    results = [json.loads((tmp_path / "results" / f"toy-1-{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]  # data parallel: both ranks hold the same parameters
    assert results[0]["step"] == 30
    manifests = sorted((tmp_path / "mnt/fsx/checkpoints/toy/manifests").glob("step-*.json"))
    assert [m.name[:17] for m in manifests] == [
        "step-000000000010",
        "step-000000000020",
        "step-000000000030",
    ]


def test_pod_deletion_drains_with_an_emergency_checkpoint(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    docs = [rank_pod("drain", r, 2) for r in range(2)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    env = {"TOY_STEPS": "100000", "TOY_STEP_SECONDS": "0.02", "TOY_EVERY": "1000000"}
    with LocalKubelet(cluster, namespace, "drain", TOY, tmp_path, extra_env=env) as kubelet:
        progress = tmp_path / "progress" / "drain-1-0"
        wait_for(
            lambda: progress.exists() and int(progress.read_text()) >= 5,
            timeout=90,
            what="training under way",
        )
        # A drain evicts one pod; SIGTERM reaches only that rank, yet both must save the same step.
        cluster.kubectl("delete", "pod", "drain-1-1", "-n", namespace, "--wait=false")
        evicted = cluster.get("pod", "drain-1-1", "-n", namespace)
        # The evicted pod keeps running through its grace period until its process exits, and
        # the API shows that real exit before the pod goes.
        changes = cluster.changes_until_deleted(evicted, timeout=60)
        assert changes[-1][0] == "DELETED", [c[0] for c in changes]
        final = changes[-1][1].status
        assert final.phase == "Failed"
        assert (
            final.container_statuses[0].state.terminated.exit_code == EXIT_CHECKPOINTED_AND_STOPPED
        )
        wait_for(lambda: len(kubelet.exits) == 2, timeout=60, what="both ranks exited")
        # Both ranks agreed on the step, saved it, and stopped with "checkpointed and stopped".
        assert dict(kubelet.exits) == {
            "drain-1-0": EXIT_CHECKPOINTED_AND_STOPPED,
            "drain-1-1": EXIT_CHECKPOINTED_AND_STOPPED,
        }, kubelet.log_of("drain-1-0")
        wait_for(
            lambda: phase(cluster, namespace, "drain-1-0") == "Failed",
            timeout=60,
            what="rank 0 reported as stopped",
        )
    manifests = list((tmp_path / "mnt/fsx/checkpoints/drain/manifests").glob("step-*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["kind"] == "emergency"
