"""Spot drill driven by the real AWS Node Termination Handler (issue 8).

NTH v1.25.1 (built from its Go module, hack/tools/pins.tsv) runs in IMDS mode for one node, fed by
amazon-ec2-metadata-mock serving a spot interruption notice; it taints the node
(`aws-node-termination-handler/spot-itn`), cordons it and drains it through the eviction API, as
the DaemonSet does on EKS. kwok keeps evicted pods running through their grace period (the stand-in
kubelet delivers SIGTERM to the real training process), so the whole path runs: the operator's
checkpoint request, NTH's eviction, the emergency commit, and the gang resuming from exactly
that step on other nodes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from drills import TOY, drill_job, finish, progress, reference, running_attempt
from local_kubelet import LocalKubelet
from operator_harness import apply, status
from pod_recorder import PodRecorder

from cluster import Cluster
from kubetrain.api.constants import (
    EXIT_CHECKPOINTED_AND_STOPPED,
    REQUEST_REASON_SPOT,
    TAINT_NTH_SPOT_ITN,
)
from support import wait_for
from tools import start_aemm, start_nth

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
STEPS = 120
TOY_ENV = {"TOY_STEPS": str(STEPS), "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "20"}


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reference(tmp_path_factory.mktemp("reference"), TOY_ENV)


def nth_marks(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """The node once NTH tainted and cordoned it."""
    obj = cluster.get("node", node)
    taints = {t["key"] for t in obj["spec"].get("taints", [])}
    return obj if TAINT_NTH_SPOT_ITN in taints and obj["spec"].get("unschedulable") else None


def test_real_nth_drains_a_spot_node_and_the_gang_resumes_from_the_emergency_commit(
    cluster: Cluster, namespace: str, operator: object, tmp_path: Path, reference_digest: str
) -> None:
    job = "nth"
    apply(cluster, namespace, drill_job(job))
    with (
        LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=TOY_ENV) as kubelet,
        PodRecorder(cluster, namespace, job) as recorder,
    ):
        first = running_attempt(cluster, namespace, job, 1)
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 30, timeout=60, what="step 30")
        victim = first[1]["spec"]["nodeName"]
        cluster._mutated_nodes.add(victim)  # NTH cordons and taints it; put back afterwards

        # The spot notice, its time pinned (AEMM's default moves on every request, and NTH
        # treats each new time as a new event to drain for).
        when = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        url, aemm = start_aemm(tmp_path, "spot", "--action", "terminate", "--time", when)
        nth = start_nth(cluster, victim, url, tmp_path)
        try:
            marked = wait_for(
                lambda: nth_marks(cluster, victim), timeout=60, what=f"NTH taint+cordon on {victim}"
            )
            requests = wait_for(
                lambda: recorder.requests(1, 2), timeout=30, what="checkpoint request on every pod"
            )
            assert requests[0] == requests[1] and requests[0]["reason"] == REQUEST_REASON_SPOT

            second = running_attempt(cluster, namespace, job, 2)
            assert victim not in {p["spec"]["nodeName"] for p in second}
            # NTH's drain went through the eviction API and ended once the pod was gone.
            wait_for(
                lambda: "Node successfully cordoned and drained" in nth.output(),
                timeout=120,
                what="NTH's drain of the victim",
            )
            assert f"evicting pod {namespace}/{job}-1-1" in nth.output()
            st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")
        finally:
            nth_log = nth.output()
            nth.stop()
            aemm.stop()
        assert "panic" not in nth_log, nth_log[-3000:]
    # Neither rank of attempt 1 lasted to the end of its grace period (SIGKILL, 137): each saved
    # and stopped (83), or was past its save when the operator took the settled gang down and
    # died of that SIGTERM in interpreter teardown (143; Python drops its handlers there).
    exits = dict(kubelet.exits)
    assert {exits[f"{job}-1-0"], exits[f"{job}-1-1"]} <= {EXIT_CHECKPOINTED_AND_STOPPED, 143}

    # From the watch: rank 0's last commit of attempt 1 is the emergency one, and every pod of
    # attempt 2 was built to resume from exactly that manifest.
    commit = recorder.last_commit(f"{job}-1-0")
    assert commit is not None
    resumes = recorder.resume_manifests(2)
    assert sorted(resumes) == [f"{job}-2-0", f"{job}-2-1"]
    assert set(resumes.values()) == {commit["manifest"]}
    # The training resumed at that step and ended bitwise equal to an uninterrupted run.
    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["started_at_step"] == commit["step"]
    assert result["params"] == reference_digest
    (event,) = st["interruptions"]
    assert event["node"] == victim and TAINT_NTH_SPOT_ITN in event["source"]
    assert event["checkpointStep"] == commit["step"]
    assert event["lostSteps"] in (0, 1)
    assert marked["spec"]["unschedulable"] is True
    assert status(cluster, namespace, job)["restarts"]["interruptions"] == 1
