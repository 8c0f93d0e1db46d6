"""Hang detection: a gang whose rank 0 stops reporting new steps is restarted (reason Hang,
counted against maxRestarts); a job that never reports progress is never judged hung."""

from __future__ import annotations

import datetime as dt

from test_reconcile_decide import ALL_NODES, at, gang, job, pod, reasons, running_status, target

from kubetrain.api.protocol import Progress
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.plan import Observed


def gang_at(step: int | None, when: dt.datetime, attempt: int = 1) -> list:  # type: ignore[type-arg]
    pods = gang(attempt)
    if step is not None:
        pods[0] = pod(attempt, 0, node="p5-a0", progress=Progress(step, when))
    return pods


def test_steps_keep_coming_no_restart_and_the_daemon_looks_again_at_the_deadline() -> None:
    t = target(progress_timeout_seconds=300)
    plan = decide(job(running_status()), t, Observed(gang_at(120, at(0)), ALL_NODES), at(10))
    assert plan.status["progress"] == {"step": 120, "time": "2026-03-01T12:00:00Z", "attempt": 1}
    assert plan.deletes == () and plan.status["phase"] == "Running"
    assert plan.requeue_after is not None and 289 <= plan.requeue_after <= 291


def test_no_new_step_within_the_timeout_restarts_the_gang_as_hung() -> None:
    t = target(progress_timeout_seconds=300)
    status = decide(job(running_status()), t, Observed(gang_at(120, at(0)), ALL_NODES), at(10))
    plan = decide(job(status.status), t, Observed(gang_at(120, at(0)), ALL_NODES), at(301))
    assert plan.status["phase"] == "Restarting"
    assert plan.status["restarts"] == {"failures": 1, "interruptions": 0, "total": 1}
    assert ("Ready", "Hang") in reasons(plan)
    [event] = [e for e in plan.events if e.reason == "Hang"]
    assert "step 120 at 2026-03-01T12:00:00Z" in event.message and event.warning
    assert len(plan.deletes) == 4


def test_a_job_that_never_reports_progress_is_never_judged_hung() -> None:
    t = target(progress_timeout_seconds=300)
    plan = decide(job(running_status()), t, Observed(gang_at(None, at(0)), ALL_NODES), at(10_000))
    assert plan.status["phase"] == "Running" and plan.deletes == ()
    assert "progress" not in plan.status


def test_hang_detection_off_by_default() -> None:
    plan = decide(job(running_status()), target(), Observed(gang_at(5, at(0)), ALL_NODES), at(9e4))
    assert plan.status["phase"] == "Running" and plan.deletes == ()


def test_a_resumed_attempt_gets_the_first_step_allowance() -> None:
    t = target(progress_timeout_seconds=300, first_progress_timeout_seconds=1800)
    seen = running_status(2, progress={"step": 120, "time": "2026-03-01T11:00:00Z", "attempt": 1})
    plan = decide(job(seen), t, Observed(gang_at(None, at(0), attempt=2), ALL_NODES), at(600))
    assert plan.status["phase"] == "Running"  # restoring: within the allowance
    plan = decide(job(seen), t, Observed(gang_at(None, at(0), attempt=2), ALL_NODES), at(1900))
    assert plan.status["phase"] == "Restarting"
    [event] = [e for e in plan.events if e.reason == "Hang"]
    assert "firstProgressTimeoutSeconds=1800" in event.message
