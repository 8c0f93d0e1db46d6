"""Spot interruption drills, end to end: a real operator, a real API server, real training processes.

A 2-node TrainingJob on simulated p5 spot nodes runs tests/e2e/toy_train.py in local processes (the
stand-in kubelet). A node then receives a spot notice, the way AWS Node Termination Handler or
Karpenter mark it, or disappears without notice. The whole gang must checkpoint at one step, come
back on other nodes from that checkpoint and finish with parameters bitwise equal to a run that
was never interrupted; status.interruptions must tell the story.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from drills import TOY, drill_job, env_of, finish, progress, reference, running_attempt
from local_kubelet import LocalKubelet
from operator_harness import apply, status
from pod_recorder import PodRecorder

from cluster import Cluster
from kubetrain.api.constants import (
    ENV_RESUME_MANIFEST,
    REQUEST_REASON_DRAIN,
    REQUEST_REASON_SPOT,
    TAINT_KARPENTER_DISRUPTED,
    TAINT_NTH_SPOT_ITN,
)
from support import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
STEPS = 120
TOY_ENV = {"TOY_STEPS": str(STEPS), "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "20"}


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reference(tmp_path_factory.mktemp("reference"), TOY_ENV)


@pytest.mark.parametrize(
    ("taint", "value", "reason"),
    [
        (TAINT_NTH_SPOT_ITN, "spot-itn-event-1", REQUEST_REASON_SPOT),
        # Karpenter's taint marks every disruption (consolidation, drift, a NodeClaim deleted by
        # hand), not only spot reclaims: named truthfully as a drain.
        (TAINT_KARPENTER_DISRUPTED, "", REQUEST_REASON_DRAIN),
    ],
    ids=["node-termination-handler", "karpenter"],
)
def test_spot_notice_checkpoints_the_gang_and_resumes_exactly(
    cluster: Cluster,
    namespace: str,
    operator: object,
    tmp_path: Path,
    reference_digest: str,
    taint: str,
    value: str,
    reason: str,
) -> None:
    job = "drill"
    apply(cluster, namespace, drill_job(job))
    with (
        LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=TOY_ENV) as kubelet,
        PodRecorder(cluster, namespace, job) as recorder,
    ):
        first = running_attempt(cluster, namespace, job, 1)
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 30, timeout=60, what="step 30")
        victim = first[1]["spec"]["nodeName"]
        cluster.taint_node(victim, taint, value)

        # 1. The request reaches every pod of the gang (seen through a watch: request, commit
        # and the gang's deletion can all happen within a fraction of a second).
        requests = wait_for(
            lambda: recorder.requests(1, 2), timeout=30, what="checkpoint request on every pod"
        )
        assert requests[0] == requests[1]
        assert requests[0]["reason"] == reason and requests[0]["deadline"]

        # 2. The gang comes back as attempt 2, away from the node, resuming from the commit.
        second = running_attempt(cluster, namespace, job, 2)
        assert victim not in {p["spec"]["nodeName"] for p in second}
        emergency = status(cluster, namespace, job)["checkpoint"]
        assert emergency["kind"] == "emergency"
        assert env_of(second[0], ENV_RESUME_MANIFEST) == emergency["uri"]

        # status.checkpoint moves on with attempt 2's periodic saves; the timeline keeps the step.
        st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")

    # 3. Exact continuation and an honest timeline.
    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["params"] == reference_digest
    assert result["started_at_step"] == emergency["step"]
    assert st["restarts"] == {"failures": 0, "interruptions": 1} | {
        k: v for k, v in st["restarts"].items() if k not in ("failures", "interruptions")
    }
    (event,) = st["interruptions"]
    assert event["node"] == victim and taint in event["source"]
    assert event["checkpointStep"] == emergency["step"]
    assert event["lostSteps"] in (0, 1)
    assert event["detectedAt"] <= event["requestedAt"] <= event["committedAt"] <= event["resumedAt"]


def test_node_lost_without_notice_resumes_from_the_last_periodic_checkpoint(
    cluster: Cluster, namespace: str, operator: object, tmp_path: Path, reference_digest: str
) -> None:
    job = "lost"
    apply(cluster, namespace, drill_job(job))
    with LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=TOY_ENV) as kubelet:
        first = running_attempt(cluster, namespace, job, 1)
        # Past the periodic checkpoint at step 40 and it is reported in status.
        wait_for(
            lambda: (status(cluster, namespace, job).get("checkpoint") or {}).get("step") == 40,
            timeout=60,
            what="periodic checkpoint 40 in status",
        )
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 45, timeout=60, what="step 45")
        victim = first[1]["spec"]["nodeName"]
        kubelet.kill_node(victim)  # the instance is gone: no SIGTERM, no checkpoint
        died_at = progress(tmp_path, f"{job}-1-1")
        cluster.delete_node(victim)

        second = running_attempt(cluster, namespace, job, 2)
        assert victim not in {p["spec"]["nodeName"] for p in second}
        st = status(cluster, namespace, job)
        assert st["checkpoint"]["step"] == 40 and st["checkpoint"]["kind"] == "periodic"
        st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")

    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["params"] == reference_digest
    assert result["started_at_step"] == 40
    (event,) = st["interruptions"]
    assert event["node"] == victim
    assert event["checkpointStep"] == 40
    # The steps since the periodic checkpoint are lost, and the timeline says how many.
    assert event["lostSteps"] == died_at - 40
