"""Spot drills, continued: a gang that misses the checkpoint deadline, and a rebalance hint.

Same set-up as test_spot_drill.py (real operator, real API server, real training processes run by
the stand-in kubelet). A missed deadline must resume from the checkpoint committed before the
notice, never from anything half-written, and say so; a rebalance recommendation must produce a
checkpoint while training goes on in the same attempt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from drills import (
    HERE,
    TOY,
    drill_job,
    env_of,
    finish,
    progress,
    reference,
    running_attempt,
)
from local_kubelet import LocalKubelet
from operator_harness import apply, condition, pods, reasons, status

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_REQUEST,
    COND_CHECKPOINTING,
    ENV_RESUME_MANIFEST,
    REQUEST_REASON_REBALANCE,
    REQUEST_REASON_SPOT,
    TAINT_NTH_REBALANCE,
    TAINT_NTH_SPOT_ITN,
)
from support import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
DEAF = HERE / "spot_deaf_train.py"
STEPS = 240
TOY_ENV = {"TOY_STEPS": str(STEPS), "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "20"}
DEADLINE_SECONDS = 10  # the smallest spec.checkpointDeadlineSeconds allows


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reference(tmp_path_factory.mktemp("reference"), TOY_ENV)


def requests_on(cluster: Cluster, ns: str, job: str, attempt: int) -> list[dict[str, Any]] | None:
    anns = [
        (p["metadata"].get("annotations") or {}).get(ANNOTATION_CHECKPOINT_REQUEST)
        for p in pods(cluster, ns, job, attempt=attempt)
    ]
    return [json.loads(a) for a in anns] if len(anns) == 2 and all(anns) else None


def test_missed_deadline_resumes_from_the_checkpoint_before_the_notice(
    cluster: Cluster, namespace: str, operator: object, tmp_path: Path, reference_digest: str
) -> None:
    job = "deaf"
    apply(cluster, namespace, drill_job(job, checkpointDeadlineSeconds=DEADLINE_SECONDS))
    env = {**TOY_ENV, "TOY_DEAF_ATTEMPT": "1"}
    with LocalKubelet(cluster, namespace, job, DEAF, tmp_path, extra_env=env) as kubelet:
        first = running_attempt(cluster, namespace, job, 1)
        before = wait_for(
            lambda: (
                (status(cluster, namespace, job).get("checkpoint") or {}).get("step") == 40
                and status(cluster, namespace, job)["checkpoint"]
            ),
            timeout=60,
            what="periodic checkpoint 40 in status",
        )
        victim = first[1]["spec"]["nodeName"]
        cluster.taint_node(victim, TAINT_NTH_SPOT_ITN, "spot-itn-deaf")

        requests = wait_for(
            lambda: requests_on(cluster, namespace, job, 1), timeout=30, what="requests"
        )
        assert requests[0] == requests[1] and requests[0]["reason"] == REQUEST_REASON_SPOT
        # Nobody answers: the job waits in Checkpointing, and still trains meanwhile.
        wait_for(
            lambda: status(cluster, namespace, job)["phase"] == "Checkpointing",
            timeout=10,
            what="phase Checkpointing",
        )
        assert status(cluster, namespace, job)["attempt"] == 1

        second = running_attempt(cluster, namespace, job, 2)
        died_at = progress(tmp_path, f"{job}-1-0")
        assert victim not in {p["spec"]["nodeName"] for p in second}
        st = status(cluster, namespace, job)
        # Resumed from the newest checkpoint committed before the notice (periodic saves go on
        # while the deadline runs, so it may be later than 40), never from an emergency one.
        resumed_from = st["checkpoint"]
        assert resumed_from["kind"] == "periodic" and resumed_from["step"] >= before["step"]
        assert env_of(second[0], ENV_RESUME_MANIFEST) == resumed_from["uri"]
        missed = condition(st, COND_CHECKPOINTING)
        assert (missed["status"], missed["reason"]) == ("False", "CheckpointDeadlineMissed")
        st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")

    assert "CheckpointDeadlineMissed" in reasons(cluster, namespace, job)
    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["params"] == reference_digest
    assert result["started_at_step"] == resumed_from["step"]
    (event,) = st["interruptions"]
    assert event["node"] == victim and event["source"] == TAINT_NTH_SPOT_ITN
    assert "committedAt" not in event  # the status says: no commit answered the request
    assert event["deadlineSource"] == "spec.checkpointDeadlineSeconds"
    assert event["requestedAt"] <= event["deadline"] <= event["resumedAt"]
    assert event["checkpointStep"] == resumed_from["step"]
    # The resumed rank 0 measured the lost work: what attempt 1 did past the checkpoint.
    # (0 when the deadline happened to fall right on a periodic save: one drill in twenty.)
    assert (
        died_at - resumed_from["step"] - 1 <= event["lostSteps"] <= died_at - resumed_from["step"]
    )


def test_rebalance_recommendation_checkpoints_without_a_restart(
    cluster: Cluster, namespace: str, operator: object, tmp_path: Path
) -> None:
    job = "rebalance"
    apply(cluster, namespace, drill_job(job))
    env = {**TOY_ENV, "TOY_EVERY": "100000"}  # no periodic saves: only the opportunistic one
    with LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=env) as kubelet:
        first = running_attempt(cluster, namespace, job, 1)
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 30, timeout=60, what="step 30")
        assert "checkpoint" not in status(cluster, namespace, job)
        victim = first[1]["spec"]["nodeName"]
        cluster.taint_node(victim, TAINT_NTH_REBALANCE, "rebalance-1")

        requests = wait_for(
            lambda: requests_on(cluster, namespace, job, 1), timeout=30, what="requests"
        )
        assert requests[0] == requests[1]
        assert requests[0]["reason"] == REQUEST_REASON_REBALANCE
        assert requests[0]["then"] == "continue"

        ckpt = wait_for(
            lambda: status(cluster, namespace, job).get("checkpoint"),
            timeout=30,
            what="opportunistic checkpoint in status",
        )
        assert ckpt["step"] >= 30
        st = finish(cluster, namespace, job, kubelet, f"{job}-1-0")

    # Same attempt all along: no restart, no budget spent, the processes never stopped.
    assert st["attempt"] == 1
    assert st["restarts"]["interruptions"] == 0 and st["restarts"]["failures"] == 0
    assert sorted(kubelet.exits) == [(f"{job}-1-0", 0), (f"{job}-1-1", 0)]
    (event,) = st["interruptions"]
    assert event["node"] == victim and event["reason"] == REQUEST_REASON_REBALANCE
    assert event["checkpointStep"] == ckpt["step"] and event["lostSteps"] == 0
    assert event["detectedAt"] <= event["requestedAt"] <= event["committedAt"]
    assert "resumedAt" not in event
    done = condition(st, COND_CHECKPOINTING)
    assert (done["status"], done["reason"]) == ("False", "CheckpointCommitted")


def test_a_hung_gang_restarts_from_its_newest_checkpoint(
    cluster: Cluster, namespace: str, operator: None, tmp_path: Path, reference_digest: str
) -> None:
    """Every rank stops stepping after step 50 (no error, no exit: a stuck pipeline). Rank 0's
    progress heartbeat stops, the operator restarts the gang after progressTimeoutSeconds
    (reason Hang, one failure counted) and training finishes from the step-40 checkpoint."""
    job = "hung"
    policy = {
        "maxRestarts": 1,
        "maxInterruptions": 0,
        "backoffSeconds": 0,
        "progressTimeoutSeconds": 60,
    }
    apply(cluster, namespace, drill_job(job, failurePolicy=policy))
    env = {
        **TOY_ENV,
        "TOY_HANG_AT_STEP": "50",
        "TOY_HANG_ATTEMPT": "1",
        "KUBETRAIN_PROGRESS_SECONDS": "1",
    }
    with LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=env) as kubelet:
        running_attempt(cluster, namespace, job, 1)
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") == 50, timeout=60, what="step 50")
        hung = wait_for(
            lambda: (status(cluster, namespace, job).get("progress") or {}).get("step") == 50,
            timeout=90,
            what="the last step before the hang in status.progress",
        )
        assert hung
        wait_for(
            lambda: status(cluster, namespace, job).get("attempt") == 2,
            timeout=120,
            what="the hung gang restarted",
        )
        assert progress(tmp_path, f"{job}-1-0") == 50  # it really never moved on
        st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")

    assert st["restarts"] == {"failures": 1, "interruptions": 0, "total": 1}
    assert "Hang" in reasons(cluster, namespace, job)
    # Goodput from the recorded events: the hung minute is not productive, the 10 steps past
    # the step-40 checkpoint were done twice, saves cost something.
    good = st["goodput"]
    first, second = good["attempts"]
    assert (first["lastStep"], first["lostSteps"]) == (50, 10)
    assert second["firstStep"] > 40 and second["endedAt"]
    total = good["total"]
    assert total["recompute"] > 0 and total["checkpointing"] > 0 and total["productive"] > 0
    hung_for = 60  # progressTimeoutSeconds: the wait is counted, but not as productive
    assert total["wall"] >= total["productive"] + hung_for
    assert 0 < good["ratio"] < 1
    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["started_at_step"] == 40
    assert result["params"] == reference_digest
