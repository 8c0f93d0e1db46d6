"""Goodput accounting from recorded events: the split of wall time per attempt and in total."""

from __future__ import annotations

import datetime as dt

from test_reconcile_decide import ALL_NODES, at, gang, job, pod, running_status, target

from kubetrain.api.models import Condition, TrainingJobStatus
from kubetrain.api.protocol import Progress, Resumed
from kubetrain.reconcile import goodput
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.plan import Observed
from kubetrain.status import rfc3339


def running(status: TrainingJobStatus, since: dt.datetime) -> None:
    status.conditions = [
        Condition(
            type="Ready",
            status="True",
            reason="AllRanksRunning",
            last_transition_time=rfc3339(since),
        )
    ]


def test_one_interrupted_attempt_and_its_resume_split_exactly() -> None:
    st = TrainingJobStatus(attempt=1, attempt_start_time=rfc3339(at(0)))
    goodput.track(st, None, at(5))  # created, nothing running yet: nothing closed
    running(st, at(10))
    goodput.track(st, Progress(10, at(40), 0.0), at(41))
    goodput.track(st, Progress(110, at(140), 6.0), at(141))
    st.restart_after = rfc3339(at(150))  # a spot notice: the attempt ends here
    goodput.track(st, None, at(145))
    # attempt 2: created after the backoff, resumed; its rank 0 says attempt 1 lost 20 steps
    st.attempt, st.attempt_start_time, st.restart_after = 2, rfc3339(at(150)), None
    resumed = Resumed(step=90, previous_step=110, manifest="m")  # 20 steps lost
    running(st, at(170))
    goodput.track(st, Progress(100, at(200), 0.0), at(201), resumed)
    goodput.track(st, Progress(200, at(300), 0.0), at(301))
    assert st.goodput is not None
    one, two = st.goodput.attempts
    assert two.first_step == 100 and two.ended_at is None
    assert (one.running_at, one.first_step_at, one.ended_at) == (
        rfc3339(at(10)),
        rfc3339(at(40)),
        rfc3339(at(145)),
    )
    total = st.goodput.total
    # attempt 1: waiting 10, startup 30; steps 10 -> 110 reported by t140 at 1 s a step, no
    # further step (the resume says it reached 110): 5 s stalled until the end at t145; 6 s of
    # saves, 20 steps redone. attempt 2: waiting 20, startup 30, 100 s of steps; backoff 5.
    assert (total.waiting, total.startup, total.checkpointing, total.recompute) == (
        30.0,
        60.0,
        6.0,
        20.0,
    )
    assert (total.backoff, total.stalled) == (5.0, 5.0)
    assert total.productive == (100 - 6 - 20) + 100
    assert total.wall == 300.0  # exactly job creation to the newest recorded event
    assert st.goodput.ratio == round(174 / 300, 4)


def test_folding_old_attempts_keeps_the_totals_exact() -> None:
    st = TrainingJobStatus()
    for a in range(1, 26):
        t0 = at(100 * a)
        st.attempt, st.attempt_start_time, st.restart_after = a, rfc3339(t0), None
        running(st, t0 + dt.timedelta(seconds=10))
        goodput.track(st, Progress(0, t0 + dt.timedelta(seconds=20)), t0)
        goodput.track(st, Progress(50, t0 + dt.timedelta(seconds=70)), t0)
        st.restart_after = rfc3339(t0)
        goodput.track(st, None, t0 + dt.timedelta(seconds=80))
    assert st.goodput is not None
    assert len(st.goodput.attempts) == 20 and st.goodput.earlier is not None
    # every attempt: 10 waiting, 10 startup, 50 stepping, 10 without a step before its end;
    # 20 backoff between attempts
    assert (st.goodput.total.productive, st.goodput.total.stalled) == (25 * 50, 25 * 10)
    assert st.goodput.total.waiting == 25 * 10 and st.goodput.total.backoff == 24 * 20


def test_goodput_reaches_the_status_through_decide_and_a_quiet_pass_writes_nothing() -> None:
    pods = gang(1)
    pods[0] = pod(1, 0, node="p5-a0", progress=Progress(30, at(-10), 1.5))
    plan = decide(job(running_status()), target(), Observed(pods, ALL_NODES), at(0))
    assert plan.status["goodput"]["attempts"][0]["firstStep"] == 30
    assert plan.status["goodput"]["total"]["checkpointing"] == 0.0
    again = decide(job(plan.status), target(), Observed(pods, ALL_NODES), at(60))
    assert not again.status_changed
