"""Kueue admission, pure parts: the Workload a job owns, what Kueue's status means for the gang,
and what the job controller writes back (kubetrain.reconcile.queue), through decide."""

from __future__ import annotations

from typing import Any

import pytest
from test_reconcile_decide import (
    ALL_NODES,
    JOB,
    NOW,
    Builder,
    at,
    gang,
    job,
    pod,
    reasons,
    running_status,
    target,
)

from kubetrain.api.constants import ANNOTATION_CHECKPOINT_REQUEST
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from kubetrain.reconcile import queue
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.plan import Observed

SPOT = queue.Flavor(
    "spot",
    (("karpenter.sh/capacity-type", "spot"),),
    ({"key": "pool", "operator": "Exists", "effect": "NoSchedule"},),
)
JOB_BODY: dict[str, Any] = {
    "metadata": {
        "name": "llama",
        "namespace": "team-a",
        "uid": "uid-1",
        "labels": {"kueue.x-k8s.io/queue-name": "gpus"},
    },
    "spec": {"nodes": 4},
}
POD: dict[str, Any] = {
    "kind": "Pod",
    "metadata": {"name": "llama-1-0", "labels": {"kubetrain.dev/job": "llama"}},
    "spec": {
        "nodeName": "ignored",
        "nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"},
        "containers": [{"name": "worker", "resources": {"requests": {"nvidia.com/gpu": "8"}}}],
    },
}


def cond(type_: str, status: str, reason: str = "R", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def wl(*conditions: dict[str, Any], flavor: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if flavor:
        status["admission"] = {
            "clusterQueue": "cq",
            "podSetAssignments": [{"name": "workers", "flavors": {"nvidia.com/gpu": flavor}}],
        }
    return {
        "metadata": {"name": "trainingjob-llama-abcde", "generation": 1, "resourceVersion": "7"},
        "spec": {"active": True},
        "status": status,
    }


ADMITTED = wl(cond("QuotaReserved", "True"), cond("Admitted", "True"), flavor="spot")
PENDING = wl(cond("QuotaReserved", "False", "Pending", "insufficient quota for nvidia.com/gpu"))
EVICTED = wl(
    cond("QuotaReserved", "True"),
    cond("Admitted", "True"),
    cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload"),
    flavor="spot",
)


def test_workload_is_the_job_controllers_own_with_one_pod_set_of_the_real_pods() -> None:
    manifest = queue.build_workload(JOB_BODY, POD, 4, queue.Priority("high", 1000))
    assert manifest == {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": queue.workload_name("llama", "uid-1"),
            "namespace": "team-a",
            "labels": {"kubetrain.dev/job": "llama", "kueue.x-k8s.io/job-uid": "uid-1"},
            "finalizers": ["kueue.x-k8s.io/resource-in-use"],
            "ownerReferences": [
                {
                    "apiVersion": "kubetrain.dev/v1alpha1",
                    "kind": "TrainingJob",
                    "name": "llama",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "queueName": "gpus",
            "podSets": [
                {
                    "name": "workers",
                    "count": 4,
                    "template": {
                        "metadata": {"labels": {"kubetrain.dev/job": "llama"}},
                        "spec": {
                            "nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"},
                            "containers": POD["spec"]["containers"],
                        },
                    },
                }
            ],
            "active": True,
            "priorityClassRef": {
                "group": "scheduling.k8s.io",
                "kind": "PriorityClass",
                "name": "high",
            },
            "priority": 1000,
        },
    }


def test_workload_names_follow_kueues_scheme_and_fit() -> None:
    name = queue.workload_name("llama", "uid-1")
    assert name.startswith("trainingjob-llama-") and len(name) == len("trainingjob-llama-") + 5
    assert name == queue.workload_name("llama", "uid-1") != queue.workload_name("llama", "uid-2")
    assert len(queue.workload_name("x" * 253, "u")) == 253


@pytest.mark.parametrize(
    ("workload", "runs", "stop", "admitted"),
    [
        (PENDING, False, "queue-eviction", "False"),
        (ADMITTED, True, None, "True"),
        (EVICTED, False, "queue-eviction", "False"),
    ],
)
def test_what_kueues_status_means_for_the_gang(
    workload: dict[str, Any], runs: bool, stop: str | None, admitted: str
) -> None:
    state = queue.queue_state("gpus", workload, [SPOT])
    assert state.runs is runs
    assert queue.stop_source(state, suspend=False) == stop
    assert queue.stop_source(state, suspend=True) == "suspend"
    value, _, message = queue.admission(state)
    assert ("True" if value else "False") == admitted
    if workload is PENDING:
        assert "insufficient quota for nvidia.com/gpu" in message and "LocalQueue gpus" in message


def test_evicted_workload_is_requeued_only_once_the_gangs_pods_are_gone() -> None:
    state = queue.queue_state("gpus", EVICTED)
    assert queue.status_update(state, "Checkpointing", pods_left=2, now="t") is None
    update = queue.status_update(state, "Queued", pods_left=0, now="t")
    assert update is not None and update["admission"] is None
    by_type = {c["type"]: (c["status"], c["reason"]) for c in update["conditions"]}
    assert by_type == {
        "QuotaReserved": ("False", "Pending"),
        "Admitted": ("False", "NoReservation"),
        "Evicted": ("True", "Preempted"),
        "Requeued": ("True", "Preempted"),
    }


def test_finished_job_releases_its_quota_once() -> None:
    state = queue.queue_state("gpus", ADMITTED)
    assert queue.status_update(state, "Succeeded", pods_left=1, now="t") is None
    update = queue.status_update(state, "Failed", pods_left=0, now="t")
    assert update is not None
    finished = next(c for c in update["conditions"] if c["type"] == "Finished")
    assert (finished["status"], finished["reason"]) == ("True", "Failed")
    done = queue.queue_state("gpus", {**ADMITTED, "status": {"conditions": update["conditions"]}})
    assert queue.status_update(done, "Failed", pods_left=0, now="t") is None
    assert queue.status_update(state, "Running", pods_left=0, now="t") is None


def test_finished_or_deleted_workload_is_let_go_once_the_pods_are_gone() -> None:
    def held(workload: dict[str, Any], **meta: Any) -> queue.QueueState:
        finalizers = ["other/finalizer", "kueue.x-k8s.io/resource-in-use"]
        body = {**workload, "metadata": {**workload["metadata"], "finalizers": finalizers, **meta}}
        return queue.queue_state("gpus", body)

    let_go = {"resourceVersion": "7", "finalizers": ["other/finalizer"]}
    finished = wl(cond("Finished", "True"))
    assert queue.release(held(finished), pods_left=0) == let_go
    assert queue.release(held(finished), pods_left=1) is None
    assert queue.release(held(ADMITTED), pods_left=0) is None
    going = held(ADMITTED, deletionTimestamp="2026-03-01T12:00:00Z")
    assert not going.runs
    assert queue.release(going, pods_left=0) == let_go
    assert queue.release(queue.queue_state("gpus", finished), pods_left=0) is None  # none held


def test_suspend_deactivates_the_workload_and_a_relabelled_job_moves_queues_until_admitted() -> (
    None
):
    admitted = {**ADMITTED, "spec": {"active": True, "queueName": "gpus"}}
    state = queue.queue_state("gpus", admitted)
    assert queue.spec_update(state, suspend=False) is None
    assert queue.spec_update(state, suspend=True) == {"active": False}
    assert queue.spec_update(queue.queue_state("other", admitted), suspend=False) is None
    pending = {**PENDING, "spec": {"active": True, "queueName": "gpus"}}
    moved = queue.queue_state("other", pending)
    assert queue.spec_update(moved, suspend=False) == {"queueName": "other"}


def test_flavor_node_labels_and_tolerations_go_onto_pods_only() -> None:
    objs = [{"kind": "Service"}, {"kind": "Pod", "spec": {"nodeSelector": {"a": "b"}}}]
    out = queue.apply_flavor(objs, [SPOT, SPOT])
    assert out[0] == {"kind": "Service"}
    assert out[1]["spec"] == {
        "nodeSelector": {"a": "b", "karpenter.sh/capacity-type": "spot"},
        "tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}],
    }
    assert objs[1]["spec"] == {"nodeSelector": {"a": "b"}}  # the builder's output is not changed


def state_of(workload: dict[str, Any]) -> queue.QueueState:
    return queue.queue_state("gpus", workload, [SPOT])


def test_queued_job_creates_nothing_until_admitted_then_pods_carry_the_flavor() -> None:
    b = Builder()
    plan = decide(job(), target(b), Observed([], {}, queue=state_of(PENDING)), NOW)
    assert plan.creates == () and b.calls == []
    assert plan.status["phase"] == "Queued"
    admitted = decide(
        job(plan.status), target(b), Observed([], {}, queue=state_of(ADMITTED)), at(1)
    )
    pods = [o for o in admitted.creates if o["kind"] == "Pod"]
    assert len(pods) == 4 and admitted.status["attempt"] == 1
    assert all(p["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "spot" for p in pods)
    assert ("Admitted", "Admitted") in reasons(admitted)


def test_evicted_gang_checkpoints_waits_for_requeue_and_resumes_from_the_commit() -> None:
    b = Builder()
    running = running_status()
    asked = decide(
        job(running), target(b), Observed(gang(1), ALL_NODES, queue=state_of(EVICTED)), NOW
    )
    assert asked.status["phase"] == "Checkpointing" and asked.deletes == ()
    requests = [
        CheckpointRequest.decode(a.annotations[ANNOTATION_CHECKPOINT_REQUEST])
        for a in asked.annotates
    ]
    assert len(requests) == 4 and {r.reason for r in requests if r} == {"queue-eviction"}
    request = requests[0]
    assert request is not None
    pods = gang(1)
    pods[0] = pod(1, 0, node="p5-a0", committed=CheckpointCommitted(request.id, 900, "/ck/9.json"))
    released = decide(
        job(asked.status), target(b), Observed(pods, ALL_NODES, queue=state_of(EVICTED)), at(1)
    )
    assert len(released.deletes) == 4 and released.creates == ()
    assert released.status["restarts"]["total"] == 0
    queued = decide(
        job(released.status), target(b), Observed([], {}, queue=state_of(PENDING)), at(2)
    )
    assert queued.status["phase"] == "Queued" and queued.creates == ()
    back = decide(job(queued.status), target(b), Observed([], {}, queue=state_of(ADMITTED)), at(9))
    assert back.status["attempt"] == 2 and b.calls == [(2, "/ck/9.json", None)]
    assert JOB in back.creates[-1]["metadata"]["name"]


def test_workload_is_outdated_only_when_what_kueue_counts_or_places_changed() -> None:
    have = queue.build_workload(JOB_BODY, POD, 4, None)
    env_only = {
        **POD,
        "spec": {
            **POD["spec"],
            "containers": [{**POD["spec"]["containers"][0], "env": [{"name": "A"}]}],
        },
    }
    assert not queue.outdated(have, queue.build_workload(JOB_BODY, env_only, 4, None))
    assert queue.outdated(have, queue.build_workload(JOB_BODY, POD, 2, None))
    more = {"name": "worker", "resources": {"requests": {"nvidia.com/gpu": "4"}}}
    fewer_gpus = {**POD, "spec": {**POD["spec"], "containers": [more]}}
    assert queue.outdated(have, queue.build_workload(JOB_BODY, fewer_gpus, 4, None))
