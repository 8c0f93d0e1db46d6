"""The pure decide step: a table of situations a user can get into and what the operator does."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

import pytest

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_SPEC_HASH,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from kubetrain.build import Placement
from kubetrain.k8s import Kube
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.loop import Claims, current_attempt_pods
from kubetrain.reconcile.observe import NodeView, PodView, node_view, pod_view
from kubetrain.reconcile.plan import Invalid, JobView, Observed, PodDelete, Policy, Target
from kubetrain.status import rfc3339

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SPEC_HASH = "h1"
NS, JOB = "team-a", "llama"


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


class Builder:
    """Stand-in for kubetrain.build.build_attempt that records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None, Placement | None]] = []
        self.sizes: list[int | None] = []  # elastic: pods when fewer than spec.nodes

    def __call__(
        self,
        attempt: int,
        resume: str | None,
        placement: Placement | None = None,
        size: int | None = None,
    ) -> list[dict[str, Any]]:
        self.calls.append((attempt, resume, placement))
        self.sizes.append(size)
        objs: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": JOB, "namespace": NS},
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": JOB, "namespace": NS}},
        ]
        for rank in range(size or self.nodes):
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name(attempt, rank),
                        "namespace": NS,
                        "annotations": {ANNOTATION_SPEC_HASH: SPEC_HASH},
                    },
                }
            )
        return objs

    nodes = 4


def name(attempt: int, rank: int) -> str:
    return f"{JOB}-{attempt}-{rank}"


def target(builder: Builder | None = None, **policy: Any) -> Target:
    b = builder or Builder()
    pol = Policy(**{"nodes": 4, "backoff_seconds": 10, "startup_timeout_seconds": 600, **policy})
    b.nodes = pol.nodes
    return Target(policy=pol, build=b, pod_name=name, spec_hash=SPEC_HASH)


def job(status: dict[str, Any] | None = None, generation: int = 1) -> JobView:
    return JobView(namespace=NS, name=JOB, uid="uid-1", generation=generation, status=status or {})


def pod(
    attempt: int,
    rank: int,
    phase: str = "Running",
    node: str | None = "p5-a0",
    exit_code: int | None = None,
    **extra: Any,
) -> PodView:
    fields: dict[str, Any] = {
        "namespace": NS,
        "name": name(attempt, rank),
        "uid": f"u{attempt}{rank}",
        "job": JOB,
        "attempt": attempt,
        "rank": rank,
        "phase": phase,
        "node": node,
        "deletion_timestamp": None,
        "ready": phase == "Running",
        "exit_code": exit_code,
        "disruption": None,
        "unschedulable": None,
        "committed": None,
        "requested": None,
        "spec_hash": SPEC_HASH,
    }
    fields.update(extra)
    return PodView(**fields)


def nodes(*names: str, not_ready: Sequence[str] = ()) -> dict[str, NodeView | None]:
    return {
        n: NodeView(
            n,
            ready=n not in not_ready,
            unschedulable=False,
            zone="us-west-2a",
            interruption_taints=(),
        )
        for n in names
    }


def gang(attempt: int, phases: Sequence[str] = ("Running",) * 4, **kw: Any) -> list[PodView]:
    return [pod(attempt, r, ph, node=f"p5-a{r}", **kw) for r, ph in enumerate(phases)]


ALL_NODES = nodes("p5-a0", "p5-a1", "p5-a2", "p5-a3")


def running_status(attempt: int = 1, **extra: Any) -> dict[str, Any]:
    """Status after a reconcile saw the gang running (built through decide, not by hand)."""
    status = {"attempt": attempt - 1, "restartAfter": rfc3339(at(-100))} if attempt > 1 else {}
    plan = decide(job(status), target(), Observed([], {}), at(-100))
    plan = decide(job(plan.status), target(), Observed(gang(attempt), ALL_NODES), at(-50))
    assert plan.status["phase"] == "Running"
    return {**plan.status, **extra}


def reasons(plan: Any) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in plan.events]


def test_new_job_creates_attempt_one_in_builder_order() -> None:
    b = Builder()
    plan = decide(job(), target(b), Observed([], {}), NOW)
    assert [o["kind"] for o in plan.creates] == ["ServiceAccount", "Service"] + ["Pod"] * 4
    assert b.calls == [(1, None, None)]
    assert plan.status["attempt"] == 1
    assert plan.status["phase"] == "Pending"
    assert plan.status["attemptStartTime"] == rfc3339(NOW)
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert plan.deletes == ()
    assert reasons(plan) == [("Ready", "Pending")]
    assert plan.requeue_after == 600


def test_invalid_spec_fails_with_the_field_and_creates_nothing() -> None:
    plan = decide(job(), Invalid("spec.nodes", "spec.nodes: must be >= 1"), Observed([], {}), NOW)
    assert plan.creates == ()
    assert plan.status["phase"] == "Failed"
    assert plan.status["message"] == "spec.nodes: must be >= 1"
    failed = next(c for c in plan.status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert [(e.reason, e.warning) for e in plan.events] == [("InvalidSpec", True)]


def test_fixed_spec_after_invalid_starts_the_job() -> None:
    failed = decide(job(), Invalid("nodes", "bad"), Observed([], {}), NOW).status
    plan = decide(job(failed, generation=2), target(), Observed([], {}), at(5))
    assert plan.status["phase"] == "Pending"
    assert plan.status["attempt"] == 1
    assert len(plan.creates) == 6


def test_all_ranks_running_is_ready_and_a_second_pass_changes_nothing() -> None:
    status = decide(job(), target(), Observed([], {}), NOW).status
    plan = decide(job(status), target(), Observed(gang(1), ALL_NODES), at(30))
    assert plan.status["phase"] == "Running"
    assert plan.status["nodes"] == {"ready": 4, "total": 4}
    assert plan.status["zone"] == "us-west-2a"
    assert reasons(plan) == [("Ready", "AllRanksRunning")]
    again = decide(job(plan.status), target(), Observed(gang(1), ALL_NODES), at(60))
    assert not again.status_changed
    assert again.events == () and again.creates == () and again.deletes == ()


def test_a_rank_not_yet_seen_is_waited_for_never_created_twice() -> None:
    """Every rank is created before the attempt's status is written: a rank the watch has not
    delivered yet (and the API server still has) is waited for, not created again."""
    status = decide(job(), target(), Observed([], {}), NOW).status
    partial = [pod(1, 0, "Pending", node=None), pod(1, 1, "Pending", node=None)]
    plan = decide(job(status), target(), Observed(partial, {}), at(1))
    assert plan.creates == () and plan.deletes == ()
    assert plan.status["attempt"] == 1


def test_a_rank_deleted_while_the_operator_was_down_restarts_the_whole_gang() -> None:
    """The API server no longer has rank 1 (loop.current_attempt_pods): the gang restarts as a
    whole, counted as an interruption, instead of rank 1 coming back alone."""
    status = running_status(attempt=3)
    pods = [p for p in gang(3) if p.rank != 1]
    plan = decide(job(status), target(), Observed(pods, ALL_NODES, frozenset({name(3, 1)})), NOW)
    assert plan.creates == ()
    assert {d.name for d in plan.deletes} == {name(3, r) for r in (0, 2, 3)}
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    [record] = plan.status["interruptions"]
    assert record["pod"] == name(3, 1) and record["source"] == "pod-deleted"
    assert "node" not in record


class ListingKube:
    """The API server's pods of the attempt, and how often a pass listed them."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.lists = 0

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.lists += 1
        return self.pods


def test_pods_just_created_are_vouched_for_until_the_watch_delivers_them() -> None:
    """At 100 gangs starting, the first watch event of a gang's pods woke a pass that found the
    other ranks missing from the index and listed the attempt's pods: half the passes. The pods
    this operator created count as created until the watch delivers each, and no longer."""
    clock = [0.0]
    claims = Claims(clock=lambda: clock[0])
    status = decide(job(), target(), Observed([], {}), NOW).status  # attempt 1, 4 ranks
    created = [pod(1, rank, "Pending", node=None) for rank in range(4)]
    claims.created(created)
    kube = ListingKube([])

    def current(indexed: list[Any]) -> tuple[list[str], frozenset[str]]:
        unseen = claims.unseen(NS, JOB)
        pods, gone = asyncio.run(
            current_attempt_pods(cast(Kube, kube), job(status), target(), indexed, unseen)
        )
        return sorted(p.name for p in pods), gone

    delivered = created[0]
    claims.saw(delivered)
    assert current([delivered]) == ([p.name for p in created], frozenset())
    assert kube.lists == 0
    # Rank 1 delivered and deleted before the next pass: the index has it no more, nor do we.
    claims.saw(created[1])
    claims.saw(created[1], gone=True)
    assert current([delivered]) == ([], frozenset({p.name for p in created}))
    assert kube.lists == 1  # the API server says which ranks are gone (here: all)
    # Past the TTL a pod never delivered (a relist after a 410 does not report each) is not
    # vouched for: the API server is asked.
    claims.created(created[2:])
    clock[0] += Claims.TTL_SECONDS + 1
    assert claims.unseen(NS, JOB) == []


def test_crash_before_status_write_recreates_same_attempt_not_a_new_one() -> None:
    b = Builder()
    # Pods of attempt 1 exist but status was never written (operator died mid-creation).
    plan = decide(job(), target(b), Observed([pod(1, 0, "Pending", node=None)], {}), NOW)
    assert b.calls == [(1, None, None)]
    assert plan.status["attempt"] == 1


def test_one_rank_failing_restarts_the_whole_gang_and_counts_a_failure() -> None:
    status = running_status()
    pods = gang(1, ("Running", "Running", "Failed", "Running"), exit_code=None)
    pods[2] = pod(1, 2, "Failed", node="p5-a2", exit_code=1)
    plan = decide(job(status), target(), Observed(pods, ALL_NODES), NOW)
    assert plan.status["restarts"] == {"failures": 1, "interruptions": 0, "total": 1}
    assert plan.status["phase"] == "Restarting"
    assert plan.status["restartAfter"] == rfc3339(at(10))
    assert {d.name for d in plan.deletes} == {name(1, r) for r in range(4)}
    assert not any(d.force for d in plan.deletes)
    assert reasons(plan) == [("Ready", "RankFailed")]
    assert plan.events[0].warning
    assert "rank 2" in plan.events[0].message and "exit code 1" in plan.events[0].message


def test_restart_waits_for_old_pods_and_backoff_then_creates_next_attempt() -> None:
    b = Builder()
    status = running_status(
        restarts={"failures": 1, "interruptions": 0}, restartAfter=rfc3339(at(10))
    )
    status["conditions"] = decide(job(status), target(), Observed(gang(1), ALL_NODES), NOW).status[
        "conditions"
    ]
    old = gang(1, deletion_timestamp=rfc3339(at(20)))
    waiting = decide(job(status), target(b), Observed(old, ALL_NODES), at(1))
    assert waiting.creates == () and b.calls == []
    gone = decide(job(status), target(b), Observed([], ALL_NODES), at(5))
    assert gone.creates == () and gone.requeue_after == pytest.approx(5)
    plan = decide(job(status), target(b), Observed([], ALL_NODES), at(10))
    assert b.calls == [(2, None, None)]
    assert plan.status["attempt"] == 2
    assert "restartAfter" not in plan.status


@pytest.mark.parametrize(("max_restarts", "failures"), [(0, 0), (2, 2)])
def test_spent_budget_fails_the_job_and_releases_pods(max_restarts: int, failures: int) -> None:
    status = running_status(restarts={"failures": failures, "interruptions": 0})
    pods = gang(1)
    pods[0] = pod(1, 0, "Failed", node="p5-a0", exit_code=3)
    plan = decide(job(status), target(max_restarts=max_restarts), Observed(pods, ALL_NODES), NOW)
    assert plan.status["phase"] == "Failed"
    assert plan.status["restarts"]["failures"] == failures
    failed = next(c for c in plan.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "maxRestarts" in failed["message"]
    assert {d.name for d in plan.deletes} == {name(1, r) for r in (1, 2, 3)}
    assert plan.creates == ()


def test_exit_83_is_an_interruption_not_a_failure() -> None:
    pods = gang(1)
    pods[1] = pod(1, 1, "Failed", node="p5-a1", exit_code=83)
    plan = decide(job(running_status()), target(), Observed(pods, ALL_NODES), NOW)
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    assert reasons(plan) == [("Ready", "NodeLost")]


def test_not_ready_node_is_an_interruption_force_deletes_its_pods_and_is_avoided_next() -> None:
    b = Builder()
    sick = nodes("p5-a0", "p5-a1", "p5-a2", "p5-a3", not_ready=["p5-a3"])
    plan = decide(job(running_status()), target(b), Observed(gang(1), sick), NOW)
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    assert PodDelete(name(1, 3), "u13", force=True) in plan.deletes
    assert PodDelete(name(1, 0), "u10", force=False, grace_seconds=5) in plan.deletes
    [record] = plan.status["interruptions"]
    assert record == {
        "node": "p5-a3",
        "source": "node-not-ready",
        "reason": "node-lost",
        "detectedAt": rfc3339(NOW),
        "attempt": 1,
    }
    nxt = decide(job(plan.status), target(b), Observed([], sick), at(11))
    assert b.calls[-1] == (2, None, None)  # placement: test_reconcile_zones
    assert nxt.status["interruptions"][0]["resumedAt"] == rfc3339(at(11))


def test_deleted_node_and_vanished_pod_are_interruptions() -> None:
    gone = {k: v for k, v in ALL_NODES.items() if k != "p5-a2"}
    plan = decide(job(running_status()), target(), Observed(gang(1), gone), NOW)
    assert plan.status["interruptions"][0]["source"] == "node-deleted"
    pods = gang(1)[:3]
    vanished = frozenset({name(1, 3)})
    plan = decide(job(running_status()), target(), Observed(pods, ALL_NODES, vanished), NOW)
    assert plan.status["interruptions"][0]["source"] == "pod-deleted"
    assert plan.creates == ()


def test_interruption_budget_spent_fails_with_its_own_reason() -> None:
    status = running_status(restarts={"failures": 0, "interruptions": 2})
    sick = nodes("p5-a0", "p5-a1", "p5-a2", "p5-a3", not_ready=["p5-a0"])
    plan = decide(job(status), target(max_interruptions=2), Observed(gang(1), sick), NOW)
    assert plan.status["phase"] == "Failed"
    assert plan.status["conditions"][-1]["reason"] == "InterruptionLimitExceeded"


def test_gang_that_cannot_fit_waits_then_releases_after_startup_timeout() -> None:
    status = decide(job(), target(nodes=6), Observed([], {}), NOW).status
    pods = gang(1, ("Running",) * 4) + [
        pod(
            1,
            r,
            "Pending",
            node=None,
            unschedulable="0/12 nodes are available: Insufficient nvidia.com/gpu",
        )
        for r in (4, 5)
    ]
    waiting = decide(job(status), target(nodes=6), Observed(pods, ALL_NODES), at(30))
    assert waiting.status["phase"] == "Pending"
    assert waiting.status["nodes"] == {"ready": 4, "total": 6}
    assert reasons(waiting) == [("Ready", "Unschedulable")]
    assert "Insufficient nvidia.com/gpu" in waiting.events[0].message
    assert waiting.deletes == ()
    plan = decide(job(waiting.status), target(nodes=6), Observed(pods, ALL_NODES), at(600))
    assert plan.status["phase"] == "Restarting"
    assert reasons(plan) == [("Ready", "StartupTimeout")]
    assert len(plan.deletes) == 6
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert plan.status["restartAfter"] == rfc3339(at(610))


def test_all_ranks_succeeded_then_ttl_deletes_the_job() -> None:
    pods = gang(1, ("Succeeded",) * 4)
    plan = decide(
        job(running_status()), target(ttl_seconds_after_finished=60), Observed(pods, ALL_NODES), NOW
    )
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["completionTime"] == rfc3339(NOW)
    assert plan.requeue_after == 60 and not plan.delete_job
    assert ("Succeeded", "AllRanksSucceeded") in reasons(plan)
    later = decide(
        job(plan.status), target(ttl_seconds_after_finished=60), Observed(pods, ALL_NODES), at(61)
    )
    assert later.delete_job
    # A succeeded job never restarts, even when its pods later disappear.
    gone = decide(job(plan.status), target(), Observed([], {}), at(70))
    assert gone.creates == () and gone.status["phase"] == "Succeeded"


def test_suspend_checkpoints_releases_pods_and_resume_starts_a_new_uncounted_attempt() -> None:
    b = Builder()
    asked = decide(
        job(running_status()), target(b, suspend=True), Observed(gang(1), ALL_NODES), NOW
    )
    assert asked.status["phase"] == "Checkpointing" and asked.deletes == ()
    requests = [
        CheckpointRequest.decode(a.annotations[ANNOTATION_CHECKPOINT_REQUEST])
        for a in asked.annotates
    ]
    assert len(requests) == 4 and {r.reason for r in requests if r} == {"suspend"}
    request = requests[0]
    assert request is not None
    pods = gang(1)
    pods[0] = pod(
        1, 0, node="p5-a0", committed=CheckpointCommitted(request.id, 1200, "/fsx/m.json")
    )
    released = decide(job(asked.status), target(b, suspend=True), Observed(pods, ALL_NODES), at(1))
    assert len(released.deletes) == 4
    assert released.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    plan = decide(job(released.status), target(b, suspend=True), Observed([], ALL_NODES), at(2))
    assert plan.status["phase"] == "Suspended"
    assert ("Suspended", "Suspended") in reasons(plan)
    resumed = decide(job(plan.status), target(b), Observed([], ALL_NODES), at(5))
    assert resumed.status["phase"] == "Pending"
    assert resumed.status["attempt"] == 2
    assert resumed.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert b.calls == [(2, "/fsx/m.json", None)]


def test_suspended_before_start_creates_nothing() -> None:
    plan = decide(job(), target(suspend=True), Observed([], {}), NOW)
    assert plan.creates == () and plan.status["phase"] == "Suspended"


def test_checkpoint_commit_on_rank0_updates_status_and_feeds_the_next_attempt() -> None:
    b = Builder()
    commit = CheckpointCommitted("c7", 1200, "/fsx/ck/manifests/step-1200.json")
    pods = gang(1)
    pods[0] = pod(1, 0, "Running", node="p5-a0", committed=commit)
    pods[1] = pod(1, 1, "Failed", node="p5-a1", exit_code=1)
    plan = decide(job(running_status()), target(b), Observed(pods, ALL_NODES), NOW)
    assert plan.status["checkpoint"] == {
        "id": "c7",
        "step": 1200,
        "uri": "/fsx/ck/manifests/step-1200.json",
        "kind": "periodic",
        "committedAt": rfc3339(NOW),
    }
    nxt = decide(job(plan.status), target(b), Observed([], ALL_NODES), at(11))
    assert b.calls[-1] == (2, "/fsx/ck/manifests/step-1200.json", None)
    assert nxt.status["resumeManifest"] == "/fsx/ck/manifests/step-1200.json"


def test_pod_stuck_terminating_on_healthy_node_is_force_deleted() -> None:
    status = running_status(restartAfter=rfc3339(at(100)))
    stuck = [pod(1, 0, "Running", node="p5-a0", deletion_timestamp=rfc3339(at(-60)))]
    fresh = [pod(1, 0, "Running", node="p5-a0", deletion_timestamp=rfc3339(at(-5)))]
    assert decide(job(status), target(), Observed(stuck, ALL_NODES), NOW).deletes == (
        PodDelete(name(1, 0), "u10", force=True),
    )
    assert decide(job(status), target(), Observed(fresh, ALL_NODES), NOW).deletes == ()


def test_views_from_real_bodies() -> None:
    body = {
        "metadata": {
            "name": name(2, 1),
            "namespace": NS,
            "uid": "x",
            "labels": {LABEL_JOB: JOB, LABEL_ATTEMPT: "2", LABEL_RANK: "1"},
            "annotations": {ANNOTATION_CHECKPOINT_COMMITTED: "{}"},
        },
        "spec": {"nodeName": "p5-a1"},
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}
            ],
            "containerStatuses": [{"state": {"terminated": {"exitCode": 137}}}],
        },
    }
    view = pod_view(body)
    assert view is not None
    assert (view.attempt, view.rank, view.exit_code, view.disruption) == (
        2,
        1,
        137,
        "DeletionByPodGC",
    )
    assert pod_view({"metadata": {"name": "other"}}) is None
    node = node_view(
        {
            "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "us-west-2b"}},
            "spec": {"taints": [{"key": "aws-node-termination-handler/spot-itn"}, {"key": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert node == NodeView(
        "n",
        True,
        False,
        "us-west-2b",
        ("aws-node-termination-handler/spot-itn",),
        labels=(("topology.kubernetes.io/zone", "us-west-2b"),),
    )


def test_mpirun_style_success_is_rank_zero_and_releases_the_other_ranks() -> None:
    pods = gang(1, ("Succeeded", "Running", "Running", "Running"))
    plan = decide(job(running_status()), target(success_ranks=(0,)), Observed(pods, ALL_NODES), NOW)
    assert plan.status["phase"] == "Succeeded"
    assert {d.name for d in plan.deletes} == {name(1, r) for r in (1, 2, 3)}


def test_the_core_cannot_write_a_status_field_the_api_does_not_declare() -> None:
    """decide computes on the API's status model: an undeclared key raises instead of being
    pruned silently by the API server."""
    from kubetrain.reconcile.draft import Draft

    draft = Draft(job(running_status()), NOW)
    with pytest.raises(ValueError, match="restartsAfter"):
        draft.status.restartsAfter = "soon"  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        draft.status.attempt = "three"  # type: ignore[assignment]
