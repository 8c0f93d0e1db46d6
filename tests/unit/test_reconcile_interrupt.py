"""Interruptions with notice: detection, the request, waiting, settling and the timeline.

Table-driven over the pure functions (kubetrain.reconcile.interrupt) and through `decide`, so the
whole decision (what is written on pods, in status, which Events, restart or not) is compared.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from test_reconcile_decide import (
    ALL_NODES,
    JOB,
    NOW,
    at,
    gang,
    job,
    pod,
    reasons,
    running_status,
    target,
)

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_REQUEST,
    COND_CHECKPOINTING,
    REQUEST_REASON_DRAIN,
    REQUEST_REASON_NODE_LOST,
    REQUEST_REASON_REBALANCE,
    REQUEST_REASON_SPOT,
    TAINT_KARPENTER_DISRUPTED,
    TAINT_KUBETRAIN_SPOT_ITN,
    TAINT_NTH_ASG_TERMINATION,
    TAINT_NTH_REBALANCE,
    TAINT_NTH_SPOT_ITN,
    TAINT_OUT_OF_SERVICE,
)
from kubetrain.api.models import Interruption
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest, Resumed
from kubetrain.reconcile import interrupt as itr
from kubetrain.reconcile import notice
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.observe import NodeView, PodView
from kubetrain.reconcile.plan import Observed, PodDelete
from kubetrain.status import get_condition, rfc3339


def node(
    name: str,
    *taints: str,
    ready: bool = True,
    cordoned: bool = False,
    notice: str | None = None,
) -> NodeView:
    return NodeView(
        name,
        ready=ready,
        unschedulable=cordoned,
        zone="us-west-2a",
        interruption_taints=tuple(sorted(taints)),
        notice_time=notice,
    )


def nodes_with(victim: NodeView | None, name: str = "p5-a1") -> dict[str, NodeView | None]:
    out = dict(ALL_NODES)
    out[name] = victim
    return out


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("victim", "pod_extra", "want"),
    [
        (node("p5-a1"), {}, []),
        (node("p5-a1", TAINT_NTH_SPOT_ITN), {}, [("p5-a1", "red", TAINT_NTH_SPOT_ITN)]),
        (
            node("p5-a1", TAINT_KARPENTER_DISRUPTED),
            {},
            [("p5-a1", "red", TAINT_KARPENTER_DISRUPTED)],
        ),
        (
            node("p5-a1", TAINT_KUBETRAIN_SPOT_ITN),
            {},
            [("p5-a1", "red", TAINT_KUBETRAIN_SPOT_ITN)],
        ),
        (
            node("p5-a1", TAINT_NTH_ASG_TERMINATION),
            {},
            [("p5-a1", "red", TAINT_NTH_ASG_TERMINATION)],
        ),
        (node("p5-a1", TAINT_OUT_OF_SERVICE), {}, [("p5-a1", "red", TAINT_OUT_OF_SERVICE)]),
        (node("p5-a1", cordoned=True), {}, [("p5-a1", "red", "cordon")]),
        (node("p5-a1", TAINT_NTH_REBALANCE), {}, [("p5-a1", "yellow", TAINT_NTH_REBALANCE)]),
        # Red wins over yellow on the same node; the spot taint names the source.
        (
            node("p5-a1", TAINT_NTH_REBALANCE, TAINT_NTH_SPOT_ITN, TAINT_KARPENTER_DISRUPTED),
            {},
            [("p5-a1", "red", TAINT_NTH_SPOT_ITN)],
        ),
        # A rebalance hint, but the pod itself is being deleted: red.
        (
            node("p5-a1", TAINT_NTH_REBALANCE),
            {"deletion_timestamp": rfc3339(NOW)},
            [("p5-a1", "red", "pod-deletion")],
        ),
        (
            node("p5-a1"),
            {"disruption": "PreemptionByScheduler"},
            [("p5-a1", "red", "pod-disruption-target")],
        ),
        # Node gone or NotReady: the node-lost path, no request is possible.
        (None, {}, []),
        (node("p5-a1", TAINT_NTH_SPOT_ITN, ready=False), {}, []),
        # A finished pod announces nothing.
        (node("p5-a1", TAINT_NTH_SPOT_ITN), {"phase": "Failed", "exit_code": 83}, []),
    ],
    ids=[
        "quiet",
        "nth-spot",
        "karpenter",
        "kubetrain-agent",
        "asg",
        "out-of-service",
        "cordon",
        "rebalance",
        "red-beats-yellow",
        "pod-deletion",
        "disruption-target",
        "node-deleted",
        "node-not-ready",
        "finished",
    ],
)
def test_detect(
    victim: NodeView | None, pod_extra: dict[str, Any], want: list[tuple[str, str, str]]
) -> None:
    pods = gang(1)
    fields = {"phase": "Running", **pod_extra}
    pods[1] = pod(1, 1, node="p5-a1", **fields)
    got = itr.detect(pods, nodes_with(victim))
    assert [(s.node, s.level, s.source) for s in got] == want


@pytest.mark.parametrize(
    ("source", "level", "reason"),
    [
        (TAINT_NTH_SPOT_ITN, "red", REQUEST_REASON_SPOT),
        # Karpenter taints every voluntary disruption too (consolidation, a NodeClaim deleted
        # by hand): a drain, not a spot reclaim, unless NTH or the node agent says so.
        (TAINT_KARPENTER_DISRUPTED, "red", REQUEST_REASON_DRAIN),
        ("cordon", "red", REQUEST_REASON_DRAIN),
        ("pod-deletion", "red", REQUEST_REASON_DRAIN),
        (TAINT_NTH_REBALANCE, "yellow", REQUEST_REASON_REBALANCE),
    ],
)
def test_signal_reason(source: str, level: str, reason: str) -> None:
    assert itr.Signal("n", level, source).reason == reason


@pytest.mark.parametrize(
    ("notice", "want_seconds", "source"),
    [
        (None, 90, itr.DEADLINE_FROM_SPEC),
        (rfc3339(at(120)), 120, itr.DEADLINE_FROM_NOTICE),
        (rfc3339(at(-5)), 90, itr.DEADLINE_FROM_SPEC),  # a stale notice: the default
        ("garbage", 90, itr.DEADLINE_FROM_SPEC),
    ],
)
def test_deadline_from_notice_else_spec(notice: str | None, want_seconds: int, source: str) -> None:
    deadline, why = itr.deadline_for(itr.Signal("n", "red", TAINT_NTH_SPOT_ITN, notice), NOW, 90)
    assert (deadline, why) == (at(want_seconds), source)


# --- the request through decide ------------------------------------------------------------------


def tainted(*taints: str, notice: str | None = None) -> dict[str, NodeView | None]:
    return nodes_with(node("p5-a1", *taints, notice=notice))


def request_of(plan: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (a.name, json.loads(a.annotations[ANNOTATION_CHECKPOINT_REQUEST])) for a in plan.annotates
    ]


def test_spot_taint_requests_a_checkpoint_from_every_pod_and_waits() -> None:
    plan = decide(
        job(running_status()), target(), Observed(gang(1), tainted(TAINT_NTH_SPOT_ITN)), NOW
    )
    want = {"id": f"{JOB}-1-1", "reason": REQUEST_REASON_SPOT, "deadline": rfc3339(at(90))}
    assert request_of(plan) == [(f"{JOB}-1-{r}", want) for r in range(4)]
    assert plan.status["phase"] == "Checkpointing"
    assert plan.deletes == () and plan.creates == ()
    assert plan.status["restarts"]["interruptions"] == 0
    (entry,) = plan.status["interruptions"]
    assert entry == {
        "node": "p5-a1",
        "source": TAINT_NTH_SPOT_ITN,
        "reason": REQUEST_REASON_SPOT,
        "detectedAt": rfc3339(NOW),
        "requestedAt": rfc3339(NOW),
        "deadline": rfc3339(at(90)),
        "deadlineSource": "spec.checkpointDeadlineSeconds",
        "attempt": 1,
    }
    assert reasons(plan) == [
        ("Interruption", "InterruptionDetected"),
        ("Checkpointing", "CheckpointRequested"),
    ]
    assert 89 <= (plan.requeue_after or 0) <= 91  # wakes at the deadline at the latest


def test_deadline_comes_from_the_node_notice_and_the_spec_default_otherwise() -> None:
    notice = rfc3339(at(110))
    plan = decide(
        job(running_status()),
        target(checkpoint_deadline_seconds=30),
        Observed(gang(1), tainted(TAINT_KUBETRAIN_SPOT_ITN, notice=notice)),
        NOW,
    )
    assert plan.status["interruptions"][0]["deadline"] == notice
    assert plan.status["interruptions"][0]["deadlineSource"] == "node-spot-notice"
    assert "from node-spot-notice" in plan.events[0].message
    plan = decide(
        job(running_status()),
        target(checkpoint_deadline_seconds=30),
        Observed(gang(1), tainted(TAINT_NTH_SPOT_ITN)),
        NOW,
    )
    assert plan.status["interruptions"][0]["deadline"] == rfc3339(at(30))
    assert plan.status["interruptions"][0]["deadlineSource"] == "spec.checkpointDeadlineSeconds"
    assert "from spec.checkpointDeadlineSeconds" in plan.events[0].message


def waiting(pods_requested: bool = True) -> tuple[dict[str, Any], list[PodView]]:
    """Status and pods one pass after a spot taint: the request is out."""
    plan = decide(
        job(running_status(checkpoint=periodic(40))),
        target(),
        Observed(gang(1), tainted(TAINT_NTH_SPOT_ITN)),
        NOW,
    )
    raw = plan.annotates[0].annotations[ANNOTATION_CHECKPOINT_REQUEST]
    request = CheckpointRequest.decode(raw)
    pods = gang(1, requested=request) if pods_requested else gang(1)
    return plan.status, pods


def periodic(step: int) -> dict[str, Any]:
    return {"id": f"c{step}", "step": step, "uri": f"/fsx/m/step-{step}.json", "kind": "periodic"}


def committed(step: int, ident: str, kind: str = "emergency") -> CheckpointCommitted:
    return CheckpointCommitted(ident, step, f"/fsx/m/step-{step}.json", kind)


def test_repeated_passes_write_the_request_once_and_keep_one_entry() -> None:
    status, pods = waiting()
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(5))
    assert plan.annotates == ()
    assert len(plan.status["interruptions"]) == 1
    assert plan.status_changed is False and plan.events == ()


def test_a_pod_that_missed_the_request_gets_it_again_with_the_same_id() -> None:
    status, pods = waiting()
    pods[2] = pod(1, 2, node="p5-a2")  # e.g. the patch was lost
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(5))
    assert [(n, r["id"]) for n, r in request_of(plan)] == [(f"{JOB}-1-2", f"{JOB}-1-1")]


def test_commit_with_the_request_id_restarts_away_with_the_emergency_checkpoint() -> None:
    status, pods = waiting()
    pods[0] = pod(1, 0, node="p5-a0", committed=committed(47, f"{JOB}-1-1"))
    t = target()
    plan = decide(job(status), t, Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(3))
    assert plan.status["checkpoint"]["kind"] == "emergency"
    assert plan.status["checkpoint"]["step"] == 47
    assert plan.status["restarts"]["interruptions"] == 1
    assert plan.status["phase"] == "Restarting"
    assert {d.name for d in plan.deletes} == {f"{JOB}-1-{r}" for r in range(4)}
    (entry,) = plan.status["interruptions"]
    assert entry["committedAt"] == rfc3339(at(3))
    assert (entry["checkpointStep"], entry["lostSteps"]) == (47, 0)
    assert ("Checkpointing", "CheckpointCommitted") in reasons(plan)
    assert ("Ready", "Interrupted") in reasons(plan)
    cond = get_condition(plan.status["conditions"], COND_CHECKPOINTING)
    assert cond is not None and "step 47" in cond["message"]

    # Next pass, pods gone: attempt 2 resumes from the commit, off the interrupted node.
    b = t.build
    plan = decide(job(plan.status), t, Observed([], ALL_NODES), at(14))  # after the 10 s backoff
    assert b.calls[-1] == (2, "/fsx/m/step-47.json", None)  # type: ignore[attr-defined]
    (entry,) = plan.status["interruptions"]
    assert entry["resumedAt"] == rfc3339(at(14))
    assert ("Interruption", "ResumedFromCheckpoint") in reasons(plan)


def test_a_commit_for_another_request_does_not_end_the_wait() -> None:
    status, pods = waiting()
    pods[0] = pod(1, 0, node="p5-a0", committed=committed(45, "periodic-id", "periodic"))
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(3))
    assert plan.status["phase"] == "Checkpointing"
    assert plan.deletes == ()
    assert plan.status["checkpoint"]["step"] == 45  # status.checkpoint still follows it


def test_missed_deadline_resumes_from_the_checkpoint_before_the_notice() -> None:
    status, pods = waiting()
    t = target()
    plan = decide(job(status), t, Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(91))
    assert plan.status["restarts"]["interruptions"] == 1
    (entry,) = plan.status["interruptions"]
    assert "committedAt" not in entry and "lostSteps" not in entry
    assert entry["checkpointStep"] == 40
    assert ("Checkpointing", "CheckpointDeadlineMissed") in reasons(plan)
    assert any(e.warning for e in plan.events if e.reason == "CheckpointDeadlineMissed")
    plan = decide(job(plan.status), t, Observed([], ALL_NODES), at(102))
    assert t.build.calls[-1] == (2, "/fsx/m/step-40.json", None)  # type: ignore[attr-defined]


def test_all_ranks_stopping_with_83_ends_the_wait_and_counts_one_interruption() -> None:
    status, pods = waiting()
    pods = [
        pod(1, r, "Failed", node=f"p5-a{r}", exit_code=83, requested=pods[r].requested)
        for r in range(4)
    ]
    pods[0] = pod(1, 0, "Failed", node="p5-a0", exit_code=83, committed=committed(47, f"{JOB}-1-1"))
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(3))
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    (entry,) = plan.status["interruptions"]  # the 83 exits are the answer, not new events
    assert entry["checkpointStep"] == 47


def test_a_rank_failing_during_the_wait_is_an_interruption_not_a_user_failure() -> None:
    status, pods = waiting()
    pods[3] = pod(1, 3, "Failed", node="p5-a3", exit_code=1)
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(3))
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    assert ("Checkpointing", "CheckpointAbandoned") in reasons(plan)


def test_node_lost_during_the_wait_restarts_now_and_records_it() -> None:
    status, pods = waiting()
    nodes = tainted(TAINT_NTH_SPOT_ITN)
    nodes["p5-a2"] = None
    plan = decide(job(status), target(), Observed(pods, nodes), at(3))
    assert plan.status["restarts"]["interruptions"] == 1
    assert [(e["node"], e["reason"]) for e in plan.status["interruptions"]] == [
        ("p5-a1", REQUEST_REASON_SPOT),
        ("p5-a2", REQUEST_REASON_NODE_LOST),
    ]
    assert any(d == PodDelete(f"{JOB}-1-2", "u12", force=True) for d in plan.deletes)


def test_a_second_node_tainted_while_waiting_joins_the_same_request() -> None:
    status, pods = waiting()
    nodes = tainted(TAINT_NTH_SPOT_ITN)
    nodes["p5-a3"] = node("p5-a3", TAINT_KARPENTER_DISRUPTED)
    plan = decide(job(status), target(), Observed(pods, nodes), at(5))
    assert plan.annotates == ()  # same id: nothing new for the pods
    first, second = plan.status["interruptions"]
    assert second["node"] == "p5-a3"
    joined = ("requestedAt", "deadline", "deadlineSource")
    assert [second[k] for k in joined] == [first[k] for k in joined]


def test_interruption_budget_spent_fails_the_job_after_the_commit() -> None:
    status, pods = waiting()
    status["restarts"] = {"failures": 0, "interruptions": 3}
    pods[0] = pod(1, 0, node="p5-a0", committed=committed(47, f"{JOB}-1-1"))
    plan = decide(
        job(status),
        target(max_interruptions=3),
        Observed(pods, tainted(TAINT_NTH_SPOT_ITN)),
        at(3),
    )
    assert plan.status["phase"] == "Failed"
    assert "maxInterruptions" in plan.status["message"]


def test_pod_deleted_by_a_drain_asks_for_a_checkpoint_instead_of_restarting_at_once() -> None:
    pods = gang(1)
    pods[2] = pod(1, 2, node="p5-a2", deletion_timestamp=rfc3339(NOW))
    plan = decide(job(running_status()), target(), Observed(pods, ALL_NODES), NOW)
    assert plan.status["phase"] == "Checkpointing"
    assert plan.deletes == ()
    assert request_of(plan)[0][1]["reason"] == REQUEST_REASON_DRAIN


# --- rebalance (yellow) ---------------------------------------------------------------------------


def test_rebalance_asks_for_a_checkpoint_and_training_continues() -> None:
    plan = decide(
        job(running_status()), target(), Observed(gang(1), tainted(TAINT_NTH_REBALANCE)), NOW
    )
    (_, request), *_ = request_of(plan)
    assert request == {
        "id": f"{JOB}-1-1",
        "reason": REQUEST_REASON_REBALANCE,
        "deadline": rfc3339(at(90)),
        "then": "continue",
    }
    assert len(plan.annotates) == 4
    assert plan.status["phase"] == "Checkpointing"
    assert plan.deletes == ()

    raw = plan.annotates[0].annotations[ANNOTATION_CHECKPOINT_REQUEST]
    pods = gang(1, requested=raw)
    pods[0] = pod(
        1, 0, node="p5-a0", requested=raw, committed=committed(52, f"{JOB}-1-1", "periodic")
    )
    plan = decide(job(plan.status), target(), Observed(pods, tainted(TAINT_NTH_REBALANCE)), at(2))
    assert plan.status["phase"] == "Running" and plan.status["attempt"] == 1
    assert plan.status["checkpoint"]["step"] == 52
    assert plan.status["restarts"]["interruptions"] == 0
    assert plan.deletes == () and plan.annotates == ()
    (entry,) = plan.status["interruptions"]
    assert (entry["committedAt"], entry["checkpointStep"], entry["lostSteps"]) == (
        rfc3339(at(2)),
        52,
        0,
    )
    assert ("Checkpointing", "CheckpointCommitted") in reasons(plan)

    # The taint stays: no second request for the same node in the same attempt.
    plan = decide(job(plan.status), target(), Observed(pods, tainted(TAINT_NTH_REBALANCE)), at(9))
    assert plan.annotates == () and len(plan.status["interruptions"]) == 1


def test_rebalance_without_an_answer_lapses_at_its_deadline_without_a_restart() -> None:
    plan = decide(
        job(running_status()), target(), Observed(gang(1), tainted(TAINT_NTH_REBALANCE)), NOW
    )
    plan = decide(
        job(plan.status), target(), Observed(gang(1), tainted(TAINT_NTH_REBALANCE)), at(91)
    )
    assert plan.status["phase"] == "Running" and plan.deletes == ()
    assert ("Checkpointing", "CheckpointDeadlineMissed") in reasons(plan)


def test_spot_after_rebalance_on_the_same_node_sends_a_new_request() -> None:
    plan = decide(
        job(running_status()), target(), Observed(gang(1), tainted(TAINT_NTH_REBALANCE)), NOW
    )
    raw = plan.annotates[0].annotations[ANNOTATION_CHECKPOINT_REQUEST]
    requested = CheckpointRequest.decode(raw)
    plan = decide(
        job(plan.status),
        target(),
        Observed(gang(1, requested=requested), tainted(TAINT_NTH_REBALANCE, TAINT_NTH_SPOT_ITN)),
        at(10),
    )
    ids = {r["id"] for _, r in request_of(plan)}
    assert ids == {f"{JOB}-1-2"}
    assert [e["reason"] for e in plan.status["interruptions"]] == [
        REQUEST_REASON_REBALANCE,
        REQUEST_REASON_SPOT,
    ]


# --- the timeline -------------------------------------------------------------------------------


def test_lost_steps_reported_by_the_resumed_rank_0_land_on_the_previous_entry() -> None:
    records = [
        Interruption(node="p5-a1", reason=REQUEST_REASON_NODE_LOST, attempt=1, checkpoint_step=40),
        Interruption(
            node="p5-a2", reason=REQUEST_REASON_REBALANCE, attempt=1, committed_at=rfc3339(NOW)
        ),
    ]
    resumed = Resumed(step=40, previous_step=47, manifest="m")
    assert itr.copy_lost_steps(records, 2, resumed) is True
    assert records[0].lost_steps == 7 and records[1].lost_steps is None
    assert itr.copy_lost_steps(records, 2, resumed) is False  # idempotent
    assert Resumed.decode("not json") is None


def test_lost_steps_through_decide() -> None:
    status = running_status(
        2,
        interruptions=[
            {
                "node": "p5-a9",
                "reason": REQUEST_REASON_NODE_LOST,
                "attempt": 1,
                "checkpointStep": 40,
            }
        ],
    )
    pods = gang(2)
    resumed = Resumed(step=40, previous_step=46, manifest="m")
    pods[0] = pod(2, 0, node="p5-a0", resumed=resumed)
    plan = decide(job(status), target(), Observed(pods, ALL_NODES), NOW)
    assert plan.status["interruptions"][0]["lostSteps"] == 6


def test_timeline_is_bounded_to_the_newest_twenty() -> None:
    old = [{"node": f"n{i}", "reason": REQUEST_REASON_NODE_LOST, "attempt": 0} for i in range(20)]
    plan = decide(
        job(running_status(interruptions=old)),
        target(),
        Observed(gang(1), tainted(TAINT_NTH_SPOT_ITN)),
        NOW,
    )
    entries = plan.status["interruptions"]
    assert len(entries) == 20
    assert entries[0]["node"] == "n1" and entries[-1]["node"] == "p5-a1"


def test_request_ids_are_deterministic_per_attempt() -> None:
    records = [Interruption(attempt=a) for a in (1, 2, 2, 3)]
    assert [itr.request_id("j", records, i) for i in range(4)] == [
        "j-1-1",
        "j-2-1",
        "j-2-2",
        "j-3-1",
    ]


def test_deadline_is_an_aware_datetime() -> None:
    req = itr.open_request(
        [
            Interruption(
                attempt=1,
                reason=REQUEST_REASON_SPOT,
                deadline="2026-03-01T12:01:30Z",
                requested_at="2026-03-01T12:00:00Z",
            )
        ],
        "j",
        1,
        NOW,
    )
    assert req is not None and req.deadline == NOW + dt.timedelta(seconds=90)


# --- regressions (issue #8) -----------------------------------------------------------------------


def test_ranks_succeeding_while_a_request_is_out_finish_the_job_not_restart_it() -> None:
    """Every rank exiting 0 wins over an open request: the work is done, nothing is thrown away."""
    status, pods = waiting()
    pods[1] = pod(1, 1, "Succeeded", node="p5-a1", exit_code=0, requested=pods[1].requested)
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(2))
    assert plan.status["phase"] == "Checkpointing"  # the other ranks are finishing too
    assert plan.deletes == () and plan.status["restarts"]["interruptions"] == 0
    done = [
        pod(1, r, "Succeeded", node=f"p5-a{r}", exit_code=0, requested=pods[r].requested)
        for r in range(4)
    ]
    plan = decide(job(plan.status), target(), Observed(done, tainted(TAINT_NTH_SPOT_ITN)), at(3))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert "restartAfter" not in plan.status
    assert ("Checkpointing", "Finished") in reasons(plan)
    assert ("Checkpointing", "CheckpointAbandoned") not in reasons(plan)


def test_a_settled_request_takes_the_old_gang_down_with_a_short_grace() -> None:
    """After the deadline, healthy ranks that ignore SIGTERM must not hold the restart for their
    full terminationGracePeriodSeconds (the resumed gang would start past the 2-minute notice)."""
    status, pods = waiting()
    plan = decide(job(status), target(), Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(91))
    assert plan.status["phase"] == "Restarting"
    assert {(d.name, d.grace_seconds) for d in plan.deletes} == {
        (f"{JOB}-1-{r}", notice.TEARDOWN_GRACE_SECONDS) for r in range(4)
    }
    # A later pass finds them terminating with their own (long) grace: it is shortened again.
    terminating = [
        pod(1, r, node=f"p5-a{r}", deletion_timestamp=rfc3339(at(91 + 115))) for r in range(4)
    ]
    plan = decide(job(plan.status), target(), Observed(terminating, ALL_NODES), at(92))
    assert {d.grace_seconds for d in plan.deletes} == {notice.TEARDOWN_GRACE_SECONDS}
    assert plan.creates == ()  # never two attempts' pods at once


def test_the_survivors_of_a_rank_failure_go_quickly_too() -> None:
    """They block in their collectives without the failed peer: no save can finish, and their
    full grace would only delay the next attempt."""
    pods = gang(1)
    pods[1] = pod(1, 1, "Failed", node="p5-a1", exit_code=1)
    plan = decide(job(running_status()), target(), Observed(pods, ALL_NODES), NOW)
    assert {d.grace_seconds for d in plan.deletes} == {notice.TEARDOWN_GRACE_SECONDS}


def test_a_pod_vanishing_while_a_request_is_out_is_recorded_by_its_name() -> None:
    status, pods = waiting()
    gone = f"{JOB}-1-2"
    rest = [p for p in pods if p.name != gone]
    t = target()
    plan = decide(
        job(status), t, Observed(rest, tainted(TAINT_NTH_SPOT_ITN), frozenset({gone})), at(2)
    )
    assert plan.status["phase"] == "Restarting"
    spot, lost = plan.status["interruptions"]
    assert spot["node"] == "p5-a1"
    assert lost["pod"] == gone and "node" not in lost and lost["source"] == "pod-deleted"
    plan = decide(job(plan.status), t, Observed([], ALL_NODES), at(20))
    [resumed] = [e.message for e in plan.events if e.reason == "ResumedFromCheckpoint"]
    assert "away from p5-a1," in resumed or resumed.endswith("away from p5-a1")
    assert ", ," not in resumed and "from ," not in resumed
