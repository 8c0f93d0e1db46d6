"""Goodput accounting: where a job's wall time went, attempt by attempt, from recorded events only.

Every number comes from timestamps already in the status (attempt created, every rank running,
the Ready condition's transition, an attempt ending) and from rank 0's progress reports (step,
time, time spent saving), never from the operator's clock at the moment of a pass: the split is
"as of the newest recorded event", the same after an operator restart, and a pass that sees
nothing new writes nothing.

Per attempt: waiting (created -> every rank running), startup (running -> first step seen),
training (first step -> the step the attempt reached, at the measured step time), split into
checkpointing (saves reported by the runtime), recompute (the steps the next attempt redid: lost
steps x step time) and productive (the rest); stalled (training time without steps: a hang, or a
gang winding down); backoff (ended -> the next attempt created).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from kubetrain.api.constants import COND_READY
from kubetrain.api.models import (
    MAX_ATTEMPTS_KEPT,
    AttemptTimes,
    Goodput,
    TimeSplit,
    TrainingJobStatus,
)
from kubetrain.api.protocol import Progress, Resumed
from kubetrain.status import REASON_RUNNING, parse_time, rfc3339

FIELDS = ("productive", "startup", "checkpointing", "waiting", "backoff", "recompute", "stalled")


def _seconds(start: str | None, end: str | None) -> float:
    a, b = parse_time(start), parse_time(end)
    return max(0.0, (b - a).total_seconds()) if a and b else 0.0


def track(
    status: TrainingJobStatus,
    progress: Progress | None,
    now: dt.datetime,
    resumed: Resumed | None = None,
) -> None:
    """Record what this pass learned about the current attempt, then recompute the split.

    `resumed`: the current attempt's rank 0 report of what it restored, which says how many
    steps the previous attempt did past that checkpoint (work done twice).
    """
    if status.attempt <= 0:
        return
    goodput = status.goodput or Goodput()
    times = goodput.attempts
    current = next((t for t in times if t.attempt == status.attempt), None)
    if current is None:
        for older in times:  # a restart is decided in the same write that ends the attempt
            older.ended_at = older.ended_at or status.attempt_start_time
        current = AttemptTimes(attempt=status.attempt, created_at=status.attempt_start_time)
        times.append(current)
    ready = next((c for c in status.conditions if c.type == COND_READY), None)
    running = ready is not None and ready.status == "True" and ready.reason == REASON_RUNNING
    if current.running_at is None and ready is not None and running:
        current.running_at = ready.last_transition_time
    if progress is not None and current.running_at is not None:
        if current.first_step is None:
            current.first_step, current.first_step_at = progress.step, rfc3339(progress.time)
        current.last_step, current.last_step_at = progress.step, rfc3339(progress.time)
        current.saving_seconds = round(progress.saving_seconds, 2)
    if status.restart_after or status.completion_time:
        current.ended_at = current.ended_at or rfc3339(now)
    if resumed is not None and resumed.lost_steps is not None:
        for t in times:
            if t.attempt == status.attempt - 1:
                t.lost_steps, t.reached_step = resumed.lost_steps, resumed.previous_step
    earlier = goodput.earlier
    while len(times) > MAX_ATTEMPTS_KEPT:  # fold the oldest into `earlier`: totals stay exact
        earlier = _add(earlier or TimeSplit(), _split(times[0], times[1]))
        del times[0]
    total = earlier or TimeSplit()
    for i, t in enumerate(times):
        total = _add(total, _split(t, times[i + 1] if i + 1 < len(times) else None))
    goodput.earlier, goodput.total = earlier, total
    goodput.ratio = round(total.productive / total.wall, 4) if total.wall > 0 else None
    status.goodput = goodput


def _split(t: AttemptTimes, following: AttemptTimes | None) -> TimeSplit:
    end = t.ended_at or t.last_step_at
    waiting = _seconds(t.created_at, t.running_at)
    startup = _seconds(t.running_at, t.first_step_at)
    training = _seconds(t.first_step_at, end)
    steps = (t.last_step or 0) - (t.first_step or 0)
    per_step = _seconds(t.first_step_at, t.last_step_at) / steps if steps > 0 else 0.0
    # Steps past the last report (the next attempt says how far it got) were made, at the
    # measured pace; the rest of the time until the end made none.
    unreported = max(0, (t.reached_step or 0) - (t.last_step or 0)) * per_step
    active = min(training, _seconds(t.first_step_at, t.last_step_at) + unreported)
    checkpointing = min(t.saving_seconds or 0.0, active)
    recompute = min((t.lost_steps or 0) * per_step, active - checkpointing)
    backoff = _seconds(t.ended_at, following.created_at) if following else 0.0
    return TimeSplit(
        productive=round(active - checkpointing - recompute, 1),
        startup=round(startup, 1),
        checkpointing=round(checkpointing, 1),
        waiting=round(waiting, 1),
        backoff=round(backoff, 1),
        recompute=round(recompute, 1),
        stalled=round(training - active, 1),
    )


def _add(a: TimeSplit, b: TimeSplit) -> TimeSplit:
    return TimeSplit(**{f: round(getattr(a, f) + getattr(b, f), 1) for f in FIELDS})


__all__: Sequence[str] = ["track"]
