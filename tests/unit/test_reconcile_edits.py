"""Editing a running job: live fields apply at once; pod-shaping fields restart the gang through a
coordinated checkpoint (SpecChanged), never mixing two specs and counted against no budget."""

from __future__ import annotations

from test_reconcile_decide import (
    ALL_NODES,
    JOB,
    NOW,
    Builder,
    at,
    gang,
    job,
    name,
    pod,
    reasons,
    running_status,
    target,
)

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_REQUEST,
    REQUEST_REASON_SPEC_CHANGED,
    SOURCE_SPEC_CHANGE,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from kubetrain.reconcile import notice
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.plan import Observed
from kubetrain.status import rfc3339


def edited(builder: Builder | None = None, **policy: object) -> object:
    t = target(builder, **policy)
    return type(t)(**{**t.__dict__, "spec_hash": "h2"})


def test_live_fields_apply_without_touching_the_gang() -> None:
    status = running_status()
    plan = decide(job(status, 2), target(max_restarts=9), Observed(gang(1), ALL_NODES), NOW)
    assert plan.annotates == () and plan.deletes == () and plan.creates == ()
    assert plan.status["phase"] == "Running"


def test_a_pod_shaping_edit_checkpoints_then_restarts_with_the_new_spec_uncounted() -> None:
    b = Builder()
    t = edited(b)
    plan = decide(job(running_status(), 2), t, Observed(gang(1), ALL_NODES), NOW)  # type: ignore[arg-type]
    requests = [
        CheckpointRequest.decode(a.annotations[ANNOTATION_CHECKPOINT_REQUEST])
        for a in plan.annotates
    ]
    assert [a.name for a in plan.annotates] == [name(1, r) for r in range(4)]
    assert {(r.reason, r.continues) for r in requests if r} == {
        (REQUEST_REASON_SPEC_CHANGED, False)
    }
    assert plan.status["phase"] == "Checkpointing"
    assert plan.deletes == () and plan.creates == ()
    [entry] = plan.status["interruptions"]
    assert entry["source"] == SOURCE_SPEC_CHANGE and "node" not in entry
    assert ("Interruption", "SpecChanged") in reasons(plan)

    # Rank 0 commits with the request id: the gang goes at once (short grace), uncounted.
    request = requests[0]
    assert request is not None
    pods = gang(1, requested=request)
    pods[0] = pod(
        1,
        0,
        node="p5-a0",
        requested=request,
        committed=CheckpointCommitted(request.id, 77, "/fsx/m/step-77.json", "emergency"),
    )
    plan = decide(job(plan.status, 2), t, Observed(pods, ALL_NODES), at(4))  # type: ignore[arg-type]
    assert plan.status["phase"] == "Restarting"
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert plan.status["restartAfter"] == rfc3339(at(4))  # no backoff for an edit
    assert {d.grace_seconds for d in plan.deletes} == {notice.TEARDOWN_GRACE_SECONDS}
    assert ("Ready", "SpecChanged") in reasons(plan)

    # Pods gone: attempt 2 is built from the new spec and resumes from that commit.
    plan = decide(job(plan.status, 2), t, Observed([], ALL_NODES), at(6))  # type: ignore[arg-type]
    assert b.calls[-1] == (2, "/fsx/m/step-77.json", None)
    assert plan.status["attempt"] == 2


def test_an_edit_before_the_gang_runs_never_builds_a_mixed_gang() -> None:
    """Pods of the next attempt left by a crashed pass but built from the old spec are deleted,
    not adopted next to pods of the new spec."""
    b = Builder()
    status = {"attempt": 1, "restartAfter": rfc3339(at(-1))}
    stale = [pod(2, 0, "Pending", node=None)]  # spec hash h1; the spec is now h2
    plan = decide(job(status, 3), edited(b), Observed(stale, ALL_NODES), NOW)  # type: ignore[arg-type]
    assert plan.creates == () and b.calls == []
    assert [d.name for d in plan.deletes] == [name(2, 0)]
    plan = decide(job(plan.status, 3), edited(b), Observed([], ALL_NODES), at(1))  # type: ignore[arg-type]
    assert b.calls == [(2, None, None)]


def test_an_edit_before_any_rank_runs_restarts_at_once() -> None:
    status = decide(job(), target(), Observed([], {}), NOW).status
    pending = [pod(1, r, "Pending", node=None) for r in range(4)]
    plan = decide(job(status, 2), edited(), Observed(pending, {}), at(1))  # type: ignore[arg-type]
    assert plan.annotates == ()
    assert plan.status["phase"] == "Restarting"
    assert plan.status["restarts"]["total"] == 0
    assert {d.name for d in plan.deletes} == {name(1, r) for r in range(4)}
    assert JOB in plan.deletes[0].name


def test_a_spot_notice_during_a_spec_change_joins_its_request_and_counts() -> None:
    from test_reconcile_interrupt import tainted

    from kubetrain.api.constants import TAINT_NTH_SPOT_ITN

    t = edited()
    plan = decide(job(running_status(), 2), t, Observed(gang(1), ALL_NODES), NOW)  # type: ignore[arg-type]
    raw = plan.annotates[0].annotations[ANNOTATION_CHECKPOINT_REQUEST]
    request = CheckpointRequest.decode(raw)
    pods = gang(1, requested=request)
    plan = decide(job(plan.status, 2), t, Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(2))  # type: ignore[arg-type]
    assert plan.annotates == ()  # the same request covers both
    assert [e["source"] for e in plan.status["interruptions"]] == [
        SOURCE_SPEC_CHANGE,
        TAINT_NTH_SPOT_ITN,
    ]
    assert request is not None
    pods[0] = pod(
        1,
        0,
        node="p5-a0",
        requested=request,
        committed=CheckpointCommitted(request.id, 9, "/fsx/m/step-9.json", "emergency"),
    )
    plan = decide(job(plan.status, 2), t, Observed(pods, tainted(TAINT_NTH_SPOT_ITN)), at(3))  # type: ignore[arg-type]
    assert plan.status["restarts"]["interruptions"] == 1
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Interrupted" and "node p5-a1" in ready["message"]
