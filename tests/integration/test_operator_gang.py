"""The operator against the real local control plane: gangs start, finish, fail, restart and wait.

The operator runs in-process with kopf's KopfRunner on the production module, one per test and
scoped to the test's namespace, so tests never see each other's jobs.
"""

from __future__ import annotations

import pytest
from kopf.testing import KopfRunner
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
    ENV_RESUME_MANIFEST,
    REQUEST_REASON_SUSPEND,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from support import wait_for

pytestmark = pytest.mark.cluster


def pods_in(cluster: Cluster, namespace: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = cluster.get("pods", "-n", namespace)["items"]
    return items


def test_gang_lands_in_one_zone_runs_and_succeeds(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, job_manifest("happy", nodes=2))
    try:
        items = running_pods(cluster, namespace, "happy", attempt=1, n=2)
        st = wait_phase(cluster, namespace, "happy", "Running")
    except AssertionError:
        print(dump(cluster, namespace))
        raise
    nodes = {p["spec"]["nodeName"] for p in items}
    zones = {
        cluster.get("node", n)["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes
    }
    types = {
        cluster.get("node", n)["metadata"]["labels"]["node.kubernetes.io/instance-type"]
        for n in nodes
    }
    assert len(nodes) == 2 and len(zones) == 1 and types == {"p5.48xlarge"}
    assert st["nodes"] == {"ready": 2, "total": 2}
    assert st["zone"] in zones
    assert condition(st, "Ready")["status"] == "True"
    for p in items:
        cluster.set_pod_outcome(namespace, p["metadata"]["name"], "Succeeded")
    st = wait_phase(cluster, namespace, "happy", "Succeeded")
    assert st["completionTime"] and st["attempt"] == 1
    assert {"Pending", "AllRanksRunning", "AllRanksSucceeded"} <= set(
        reasons(cluster, namespace, "happy")
    )


def test_unrunnable_spec_fails_invalid_spec_with_event_and_no_pods(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    # Schema-valid, but no such instance type in the profiles: only the operator can say no.
    manifest = job_manifest("bad", accelerator={"kind": "nvidia", "instanceType": "p99.mega"})
    apply(cluster, namespace, manifest)
    st = wait_phase(cluster, namespace, "bad", "Failed")
    failed = condition(st, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.accelerator" in failed["message"]
    wait_for(lambda: "InvalidSpec" in reasons(cluster, namespace, "bad"), timeout=20, what="event")
    assert pods(cluster, namespace, "bad") == []


def test_one_rank_failing_restarts_the_gang_until_the_budget_is_spent(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    apply(
        cluster,
        namespace,
        job_manifest("flaky", nodes=2, failurePolicy={"maxRestarts": 1, "backoffSeconds": 0}),
    )
    first = running_pods(cluster, namespace, "flaky", attempt=1, n=2)
    cluster.set_pod_outcome(namespace, first[1]["metadata"]["name"], "Failed", exit_code=3)
    # Attempt 2 starts only after every pod of attempt 1 is gone.
    second = running_pods(cluster, namespace, "flaky", attempt=2, n=2)
    assert live_pods(cluster, namespace, "flaky", attempt=1) == []
    st = wait_phase(cluster, namespace, "flaky", "Running")
    assert st["attempt"] == 2
    assert st["restarts"]["failures"] == 1 and st["restarts"]["interruptions"] == 0
    assert "RankFailed" in reasons(cluster, namespace, "flaky")
    cluster.set_pod_outcome(namespace, second[0]["metadata"]["name"], "Failed", exit_code=3)
    st = wait_phase(cluster, namespace, "flaky", "Failed")
    assert condition(st, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "exit code 3" in condition(st, "Failed")["message"]
    wait_for(
        lambda: (
            live_pods(cluster, namespace, "flaky", attempt=2) == []
            or all(
                p["status"].get("phase") in ("Failed", "Succeeded")
                for p in live_pods(cluster, namespace, "flaky", attempt=2)
            )
        ),
        timeout=30,
        what="attempt 2 released",
    )
    assert not any(
        p["metadata"]["labels"]["kubetrain.dev/attempt"] == "3"
        for p in pods(cluster, namespace, "flaky")
    )


def test_gang_that_cannot_fit_never_runs_releases_after_timeout_and_retries(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    # 6 x p5 when no zone has that many: some pods stay Pending. The p5 pool is a Karpenter
    # NodePool, so the gang is not held behind its gate (Karpenter provisions only for pods it
    # sees pending): released at once, it waits out startupTimeoutSeconds as before.
    apply(
        cluster,
        namespace,
        job_manifest("big", nodes=6, startupTimeoutSeconds=30, capacity={"type": "spot"}),
    )
    wait_for(
        lambda: (
            condition(status(cluster, namespace, "big"), "Ready").get("reason") == "Unschedulable"
        ),
        timeout=30,
        what="Unschedulable",
    )
    st = status(cluster, namespace, "big")
    assert st["phase"] == "Pending"
    # After the startup timeout every pod of attempt 1 is released and attempt 2 is created.
    wait_for(
        lambda: status(cluster, namespace, "big").get("attempt", 0) >= 2,
        timeout=60,
        what="attempt 2",
    )
    assert live_pods(cluster, namespace, "big", attempt=1) == [] or all(
        p["metadata"].get("deletionTimestamp") for p in pods(cluster, namespace, "big", attempt=1)
    )
    assert "StartupTimeout" in reasons(cluster, namespace, "big")
    msg = next(
        e["message"]
        for e in (cluster.get("events", "-n", namespace)["items"])
        if e["reason"] == "StartupTimeout"
    )
    assert "startupTimeoutSeconds=30" in msg and "released" in msg
    st = status(cluster, namespace, "big")
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert st["phase"] != "Running"


def test_node_not_ready_under_a_running_job_restarts_it_as_an_interruption(
    cluster: Cluster, namespace: str, operator: KopfRunner, spare_nodes: list[str]
) -> None:
    apply(cluster, namespace, job_manifest("spotty", nodes=2))
    first = running_pods(cluster, namespace, "spotty", attempt=1, n=2)
    wait_phase(cluster, namespace, "spotty", "Running")
    lost = first[0]["spec"]["nodeName"]
    cluster.make_node_not_ready(lost)
    wait_for(
        lambda: status(cluster, namespace, "spotty").get("attempt") == 2,
        timeout=60,
        what="attempt 2",
    )
    second = running_pods(cluster, namespace, "spotty", attempt=2, n=2)
    assert lost not in {p["spec"]["nodeName"] for p in second}
    st = wait_phase(cluster, namespace, "spotty", "Running")
    assert st["restarts"]["interruptions"] == 1 and st["restarts"]["failures"] == 0
    record = st["interruptions"][0]
    assert record["node"] == lost and record["source"] == "node-not-ready" and record["resumedAt"]
    assert "NodeLost" in reasons(cluster, namespace, "spotty")


def test_node_deleted_under_a_running_job_restarts_it_as_an_interruption(
    cluster: Cluster, namespace: str, operator: KopfRunner, spare_nodes: list[str]
) -> None:
    apply(cluster, namespace, job_manifest("gone", nodes=2))
    first = running_pods(cluster, namespace, "gone", attempt=1, n=2)
    wait_phase(cluster, namespace, "gone", "Running")
    lost = first[1]["spec"]["nodeName"]
    cluster.delete_node(lost)
    second = running_pods(cluster, namespace, "gone", attempt=2, n=2)
    assert lost not in {p["spec"]["nodeName"] for p in second}
    st = wait_phase(cluster, namespace, "gone", "Running")
    assert st["restarts"]["interruptions"] == 1
    assert st["interruptions"][0]["source"] in ("node-deleted", "node-not-ready", "pod-deleted")


def test_suspend_checkpoints_releases_pods_and_resume_starts_a_new_attempt(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, job_manifest("nap", nodes=2))
    first = running_pods(cluster, namespace, "nap", attempt=1, n=2)
    cluster.kubectl(
        "patch",
        "trainingjob",
        "nap",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )

    # Like a spot notice: every rank is asked for a checkpoint before the pods go.
    def asked() -> list[CheckpointRequest] | None:
        found = [
            CheckpointRequest.decode(
                (p["metadata"].get("annotations") or {}).get(ANNOTATION_CHECKPOINT_REQUEST)
            )
            for p in pods(cluster, namespace, "nap", attempt=1)
        ]
        return [r for r in found if r] if len(found) == 2 and all(found) else None

    requests = wait_for(asked, timeout=30, what="the checkpoint request on both ranks")
    assert {r.reason for r in requests} == {REQUEST_REASON_SUSPEND}
    assert status(cluster, namespace, "nap")["phase"] == "Checkpointing"
    rank0 = next(p for p in first if p["metadata"]["labels"]["kubetrain.dev/rank"] == "0")
    commit = CheckpointCommitted(requests[0].id, 300, "/fsx/ck/step-300.json", "emergency")
    cluster.kubectl(
        "annotate", "pod", rank0["metadata"]["name"], "-n", namespace, "--overwrite",
        f"{ANNOTATION_CHECKPOINT_COMMITTED}={commit.encode()}",
    )  # fmt: skip
    wait_phase(cluster, namespace, "nap", "Suspended")
    wait_for(lambda: pods(cluster, namespace, "nap") == [], timeout=30, what="pods released")
    cluster.kubectl(
        "patch",
        "trainingjob",
        "nap",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":false}}',
    )
    second = running_pods(cluster, namespace, "nap", attempt=2, n=2)
    env = {e["name"]: e.get("value") for e in second[0]["spec"]["containers"][0]["env"]}
    assert env[ENV_RESUME_MANIFEST] == "/fsx/ck/step-300.json"
    st = wait_phase(cluster, namespace, "nap", "Running")
    assert st["restarts"]["total"] == 0
    assert {"Suspended", "Resumed"} <= set(reasons(cluster, namespace, "nap"))


def test_ttl_after_finished_deletes_the_job_and_its_pods(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, job_manifest("brief", nodes=1, ttlSecondsAfterFinished=2))
    [only] = running_pods(cluster, namespace, "brief", attempt=1, n=1)
    cluster.set_pod_outcome(namespace, only["metadata"]["name"], "Succeeded")
    wait_for(
        lambda: (
            cluster.kubectl("get", "trainingjob", "brief", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=60,
        what="job deleted by TTL",
    )
    wait_for(
        lambda: pods(cluster, namespace, "brief") == [], timeout=60, what="pods garbage-collected"
    )
