"""Kueue preemption as an interruption, end to end: real Kueue, real operator, real training.

A low-priority 2-node TrainingJob runs tests/e2e/toy_train.py in local processes (the stand-in
kubelet) under a ClusterQueue with quota for one gang. A high-priority job arrives; Kueue preempts
the first one. Like at a spot notice, every rank gets the checkpoint request, rank 0 commits, the
pods go, and only then does the preemptor get the quota. When the preemptor ends, the first job is
admitted again and finishes from the committed step with parameters bitwise equal to a run that
was never interrupted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from drills import TOY, drill_job, env_of, finish, progress, reference, running_attempt
from kueue_harness import Kueue, queue_objects, run_kueue
from local_kubelet import LocalKubelet
from operator_harness import SIGTERM_EXITS, apply, condition, job_manifest, running_pods, status
from pod_recorder import PodRecorder

from cluster import Cluster
from kubetrain.api.constants import (
    ENV_RESUME_MANIFEST,
    LABEL_QUEUE_NAME,
    REQUEST_REASON_QUEUE_EVICTION,
)
from support import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
STEPS = 120
TOY_ENV = {"TOY_STEPS": str(STEPS), "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "20"}


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    with run_kueue(cluster, tmp_path_factory.mktemp("kueue")) as running:
        yield running


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reference(tmp_path_factory.mktemp("reference"), TOY_ENV)


@pytest.fixture
def gpu_queue(cluster: Cluster, namespace: str, kueue: Kueue) -> Iterator[str]:
    """Quota for one 2-node p5 gang (16 GPUs), preemption of lower priorities, two classes."""
    name = f"drill-{namespace[-6:]}"
    objects = queue_objects(name, namespace, 16, preemption=True)
    classes = [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": f"{name}-{level}"},
            "value": value,
        }
        for level, value in (("low", 100), ("high", 1000))
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([*objects, *classes]))
    try:
        yield name
    finally:
        for obj in reversed([*objects, *classes]):
            cluster.kubectl(
                "delete", obj["kind"].lower(), obj["metadata"]["name"], "-n", namespace,
                "--wait=false", "--ignore-not-found", check=False,
            )  # fmt: skip


def test_preempted_gang_commits_releases_quota_and_resumes_exactly(
    cluster: Cluster,
    namespace: str,
    operator: object,
    gpu_queue: str,
    tmp_path: Path,
    reference_digest: str,
) -> None:
    low = drill_job("low")
    low["metadata"]["labels"] = {LABEL_QUEUE_NAME: gpu_queue}
    low["spec"]["podTemplate"]["spec"]["priorityClassName"] = f"{gpu_queue}-low"
    high_template = copy.deepcopy(SIGTERM_EXITS) | {
        "spec": {"priorityClassName": f"{gpu_queue}-high"}
    }
    high = job_manifest("high", nodes=2, podTemplate=high_template)
    high["metadata"]["labels"] = {LABEL_QUEUE_NAME: gpu_queue}

    apply(cluster, namespace, low)
    with (
        LocalKubelet(cluster, namespace, "low", TOY, tmp_path, extra_env=TOY_ENV) as kubelet,
        PodRecorder(cluster, namespace, "low") as recorder,
    ):
        running_attempt(cluster, namespace, "low", 1)
        wait_for(lambda: progress(tmp_path, "low-1-0") >= 30, timeout=60, what="step 30")
        apply(cluster, namespace, high)

        # 1. Kueue preempts `low`: the request reaches every rank (through a watch).
        requests = wait_for(
            lambda: recorder.requests(1, 2), timeout=60, what="checkpoint request on every pod"
        )
        assert requests[0] == requests[1]
        assert requests[0]["reason"] == REQUEST_REASON_QUEUE_EVICTION

        # 2. Rank 0 commits, the gang goes, the preemptor runs, `low` is queued.
        high_pods = running_pods(cluster, namespace, "high", attempt=1, n=2)
        st = wait_for(
            lambda: (s := status(cluster, namespace, "low")).get("phase") == "Queued" and s,
            timeout=60,
            what="low Queued",
        )
        emergency = st["checkpoint"]
        assert emergency["kind"] == "emergency"
        assert condition(st, "Admitted")["status"] == "False"
        assert st["restarts"]["failures"] == 0 and st["restarts"]["interruptions"] == 0
        assert not kubelet.running_pods(), "the preempted gang still runs next to the preemptor"

        # 3. The preemptor ends; `low` is admitted again and resumes from the commit.
        for pod in high_pods:
            cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
        second = running_attempt(cluster, namespace, "low", 2, timeout=120)
        assert env_of(second[0], ENV_RESUME_MANIFEST) == emergency["uri"]
        st = finish(cluster, namespace, "low", kubelet, "low-2-0")

    result = json.loads((tmp_path / "results" / "low-2-0.json").read_text())
    assert result["params"] == reference_digest
    assert result["started_at_step"] == emergency["step"]
    (event,) = st["interruptions"]
    assert event["source"] == "queue-eviction"
    assert event["checkpointStep"] == emergency["step"] and event["lostSteps"] in (0, 1)
