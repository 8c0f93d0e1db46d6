"""Elastic resize, end to end: a 4-node p5 spot job with minNodes 2 loses two nodes to a spot
reclaim when no other zone has room; it resumes on the 2 nodes left (real training processes,
WORLD_SIZE 2, a torch.distributed.checkpoint written by 4 ranks resharded onto 2) and grows back
to 4 at a coordinated checkpoint when the nodes return, resharding again. Real operator, real API
server, the stand-in kubelet running tests/e2e/toy_train.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from drills import TOY, drill_job, env_of, progress
from local_kubelet import LocalKubelet
from operator_harness import apply, pods, status
from pod_recorder import PodRecorder

from cluster import Cluster
from kubetrain.api.constants import (
    ENV_RESUME_MANIFEST,
    REQUEST_REASON_RESIZE,
    TAINT_NTH_SPOT_ITN,
)
from support import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
STEPS = 160
TOY_ENV = {
    "TOY_STEPS": str(STEPS),
    "TOY_STEP_SECONDS": "0.1",
    "TOY_EVERY": "20",
    "TOY_CODEC": "dcp",
}
ZONE_A = [f"p5-spot-a{i}" for i in range(4)]
ZONE_B = [f"p5-spot-b{i}" for i in range(4)]


def running(cluster: Cluster, ns: str, job: str, attempt: int, size: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        items = pods(cluster, ns, job, attempt=attempt)
        ok = len(items) == size and all(p["status"].get("phase") == "Running" for p in items)
        return items if ok else None

    return wait_for(ready, timeout=120, what=f"attempt {attempt} running on {size} nodes")


def test_a_gang_shrinks_to_the_room_left_and_grows_back_when_nodes_return(
    cluster: Cluster, namespace: str, operator: object, tmp_path: Path
) -> None:
    for node in ZONE_B:  # no room in the other zone: only shrinking keeps the job training
        cluster.cordon(node)
    job = "elastic"
    apply(
        cluster,
        namespace,
        drill_job(job, nodes=4, minNodes=2, shrinkAfterSeconds=5),
    )
    with (
        LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=TOY_ENV) as kubelet,
        PodRecorder(cluster, namespace, job) as recorder,
    ):
        first = running(cluster, namespace, job, 1, 4)
        assert sorted(p["spec"]["nodeName"] for p in first) == ZONE_A
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 30, timeout=90, what="step 30")

        # Two of the four nodes are reclaimed at once.
        lost = sorted(p["spec"]["nodeName"] for p in first)[2:]
        for node in lost:
            cluster.taint_node(node, TAINT_NTH_SPOT_ITN, "spot-itn")

        # Attempt 2 runs on the two nodes left, with a world of 2, from the emergency commit.
        second = running(cluster, namespace, job, 2, 2)
        assert not {p["spec"]["nodeName"] for p in second} & set(lost)
        assert {env_of(p, "NNODES") for p in second} == {"2"}
        st = status(cluster, namespace, job)
        assert (st["size"]["current"], st["size"]["desired"]) == (2, 4)
        assert "running on 2 of 4 nodes" in st["size"]["reason"]
        shrunk_from = st["checkpoint"]
        assert shrunk_from["kind"] == "emergency"
        wait_for(
            lambda: progress(tmp_path, f"{job}-2-0") >= shrunk_from["step"] + 10,
            timeout=90,
            what="attempt 2 training on 2 nodes",
        )
        # Rank 0 restored the 4-rank checkpoint onto 2 ranks, at the committed step.
        assert (recorder.resumed(f"{job}-2-0") or {}).get("step") == shrunk_from["step"]

        # The nodes come back: the gang checkpoints and grows back to 4.
        for node in lost:
            cluster.kubectl("taint", "node", node, f"{TAINT_NTH_SPOT_ITN}-")
        requests = wait_for(
            lambda: recorder.requests(2, 2), timeout=60, what="resize request on both pods"
        )
        assert {r["reason"] for r in requests} == {REQUEST_REASON_RESIZE}
        third = running(cluster, namespace, job, 3, 4)
        assert {env_of(p, "NNODES") for p in third} == {"4"}
        grown_from = status(cluster, namespace, job)["checkpoint"]
        assert grown_from["kind"] == "emergency" and grown_from["step"] > shrunk_from["step"]
        assert {env_of(p, ENV_RESUME_MANIFEST) for p in third} == {grown_from["uri"]}

        st = wait_for(
            lambda: (
                (s := status(cluster, namespace, job)).get("phase") in ("Succeeded", "Failed") and s
            ),
            timeout=180,
            what=f"{job} finished",
        )
        assert st["phase"] == "Succeeded", (st, kubelet.log_of(f"{job}-3-0")[-3000:])
        assert not kubelet.errors, kubelet.errors

    # Grown back, the 2-rank checkpoint was restored onto 4 ranks at its step, and training ran
    # to the end.
    result = json.loads((tmp_path / "results" / f"{job}-3-0.json").read_text())
    assert result["started_at_step"] == grown_from["step"]
    assert result["step"] == STEPS
    # One interruption counted; growing back is free.
    assert (st["restarts"]["interruptions"], st["restarts"]["failures"]) == (1, 0)
    assert (st["size"]["current"], st["size"]["desired"]) == (4, 4)
