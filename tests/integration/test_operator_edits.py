"""Editing a running job on the real API server, and finishing while a checkpoint request is out.

Fields that only steer the operator apply live; an edit that reshapes the pods is a coordinated
checkpoint-restart (SpecChanged) into a gang built wholly from the new spec.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_harness import (
    apply,
    condition,
    dump,
    job_manifest,
    live_pods,
    pods,
    reasons,
    running_pods,
    status,
    wait_phase,
)

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_SPEC_HASH,
    REQUEST_REASON_SPEC_CHANGED,
    TAINT_NTH_SPOT_ITN,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from support import wait_for

pytestmark = pytest.mark.cluster


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def request_on(pod: dict[str, Any]) -> CheckpointRequest | None:
    return CheckpointRequest.decode(
        pod["metadata"].get("annotations", {}).get(ANNOTATION_CHECKPOINT_REQUEST)
    )


def test_growing_a_running_job_checkpoints_and_restarts_one_consistent_gang(
    cluster: Cluster, namespace: str, operator: Any, spare_nodes: list[str]
) -> None:
    apply(cluster, namespace, job_manifest("grow", nodes=2))
    first = running_pods(cluster, namespace, "grow", attempt=1, n=2)
    wait_phase(cluster, namespace, "grow", "Running")
    cluster.kubectl(
        "patch", "tj", "grow", "-n", namespace, "--type=merge", "-p", '{"spec":{"nodes":3}}'
    )

    def asked() -> list[CheckpointRequest] | None:
        found = [request_on(p) for p in live_pods(cluster, namespace, "grow", attempt=1)]
        return [r for r in found if r] if len(found) == 2 and all(found) else None

    try:
        requests = wait_for(asked, timeout=30, interval=0.3, what="spec-change request on each pod")
    except AssertionError:
        print(dump(cluster, namespace))
        raise
    assert {r.reason for r in requests} == {REQUEST_REASON_SPEC_CHANGED}
    assert len({r.id for r in requests}) == 1
    # No rank was added next to the old ones while the request is out.
    assert sorted(p["metadata"]["name"] for p in pods(cluster, namespace, "grow")) == [
        "grow-1-0",
        "grow-1-1",
    ]
    assert status(cluster, namespace, "grow")["phase"] == "Checkpointing"

    commit = CheckpointCommitted(
        requests[0].id, 12, "/fsx/grow/manifests/step-12.json", "emergency"
    )
    cluster.kubectl(
        "annotate",
        "pod",
        first[0]["metadata"]["name"],
        "-n",
        namespace,
        "--overwrite",
        f"{ANNOTATION_CHECKPOINT_COMMITTED}={commit.encode()}",
    )
    second = running_pods(cluster, namespace, "grow", attempt=2, n=3)
    assert live_pods(cluster, namespace, "grow", attempt=1) == []
    assert {env_of(p)["WORLD_SIZE"] for p in second} == {"24"}  # 3 nodes x 8 GPUs
    assert {env_of(p)["KUBETRAIN_RESUME_MANIFEST"] for p in second} == {commit.manifest}
    assert len({p["metadata"]["annotations"][ANNOTATION_SPEC_HASH] for p in second}) == 1
    role = cluster.get("role", "-n", namespace, "-l", "kubetrain.dev/attempt=2")["items"][0]
    assert sorted(role["rules"][0]["resourceNames"]) == [f"grow-2-{r}" for r in range(3)]
    st = wait_phase(cluster, namespace, "grow", "Running")
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert "SpecChanged" in reasons(cluster, namespace, "grow")


def test_live_fields_apply_without_a_restart(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    apply(cluster, namespace, job_manifest("steer", nodes=2))
    before = running_pods(cluster, namespace, "steer", attempt=1, n=2)
    wait_phase(cluster, namespace, "steer", "Running")
    patch = {"spec": {"failurePolicy": {"maxRestarts": 7}, "startupTimeoutSeconds": 300}}
    cluster.kubectl(
        "patch", "tj", "steer", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    wait_for(
        lambda: status(cluster, namespace, "steer").get("observedGeneration") == 2,
        timeout=30,
        what="the edit observed",
    )
    after = live_pods(cluster, namespace, "steer")
    assert [p["metadata"]["uid"] for p in after] == [p["metadata"]["uid"] for p in before]
    assert all(request_on(p) is None for p in after)
    assert status(cluster, namespace, "steer")["attempt"] == 1


def test_ranks_finishing_while_a_checkpoint_request_is_out_succeed_the_job(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    apply(cluster, namespace, job_manifest("done", nodes=2))
    gang = running_pods(cluster, namespace, "done", attempt=1, n=2)
    wait_phase(cluster, namespace, "done", "Running")
    cluster.taint_node(gang[1]["spec"]["nodeName"], TAINT_NTH_SPOT_ITN, "e1")
    wait_phase(cluster, namespace, "done", "Checkpointing")
    for pod in gang:  # both ranks exit 0 before any commit
        cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
    st = wait_phase(cluster, namespace, "done", "Succeeded")
    assert st["attempt"] == 1
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert condition(st, "Checkpointing")["reason"] == "Finished"
    assert "CheckpointAbandoned" not in reasons(cluster, namespace, "done")
    assert not any(
        p["metadata"]["labels"]["kubetrain.dev/attempt"] == "2"
        for p in pods(cluster, namespace, "done")
    )
