"""The status being computed in one reconcile pass, plus what the pass wants done besides.

Shared by `decide` and `notice` so each stays a small module; no I/O, no clock (`now` is given).
The status is the API model (`TrainingJobStatus`), parsed once from the job and dumped once into
the Plan: a field it does not declare cannot be written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from kubetrain.api.constants import COND_FAILED, COND_READY
from kubetrain.api.models import Condition, Interruption, NodeCounts, TrainingJobStatus
from kubetrain.api.protocol import Progress, Resumed
from kubetrain.reconcile import goodput
from kubetrain.reconcile.plan import JobView, Plan, PodAnnotate, PodDelete, PodPatch
from kubetrain.status import (
    Transition,
    derive_phase,
    get_condition,
    rfc3339,
    set_condition,
    status_patch,
    transitions,
)

MAX_INTERRUPTION_RECORDS = 20
RESYNC_SECONDS = 300.0  # safety net when no event arrives


def seconds_until(moment: dt.datetime | None, now: dt.datetime) -> float:
    return 0.0 if moment is None else max(0.0, (moment - now).total_seconds())


def _dump(model: Condition) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class Draft:
    """The status being computed; conditions are updated through `cond` so times stay right."""

    def __init__(self, job: JobView, now: dt.datetime) -> None:
        self.job = job
        self.now = now
        self.now_s = rfc3339(now)
        self.status = TrainingJobStatus.model_validate(dict(job.status))
        # Beyond creates/deletes: checkpoint requests to write and timeline Events to post.
        self.annotates: list[PodAnnotate] = []
        self.notes: list[Transition] = []
        self.wake_at: dt.datetime | None = None  # e.g. a request's deadline
        self.progress: Progress | None = None  # rank 0's newest step in the current attempt
        self.resumed: Resumed | None = None  # what the current attempt's rank 0 restored

    @property
    def attempt(self) -> int:
        return self.status.attempt

    @property
    def records(self) -> list[Interruption]:
        """The interruption timeline of the job (entries are changed in place)."""
        return self.status.interruptions

    def note(self, reason: str, message: str) -> None:
        """An Event with no condition of its own (the interruption timeline)."""
        self.notes.append(Transition("Interruption", "", reason, message))

    def nodes(self, ready: int, total: int) -> None:
        self.status.nodes = NodeCounts(ready=ready, total=total)

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return [_dump(c) for c in self.status.conditions]

    def cond(self, type_: str, value: bool, reason: str, message: str) -> None:
        updated = set_condition(
            self.conditions,
            type_,
            value,
            reason,
            message,
            now=self.now_s,
            observed_generation=self.job.generation,
        )
        self.status.conditions = [Condition.model_validate(c) for c in updated]

    def finish(
        self,
        *,
        creates: Sequence[dict[str, Any]] = (),
        patches: Sequence[PodPatch] = (),
        deletes: Sequence[PodDelete] = (),
        requeue: float | None = RESYNC_SECONDS,
        delete_job: bool = False,
    ) -> Plan:
        conditions = self.conditions
        self.status.phase = derive_phase(conditions)  # type: ignore[assignment]
        self.status.observed_generation = self.job.generation
        self.status.interruptions = self.status.interruptions[-MAX_INTERRUPTION_RECORDS:]
        goodput.track(self.status, self.progress, self.now, self.resumed)
        headline = get_condition(conditions, COND_FAILED)
        if not (headline and headline.get("status") == "True"):
            headline = get_condition(conditions, COND_READY)
        if headline and headline.get("message"):
            self.status.message = str(headline["message"])
        # Computed printer-column fields (restarts.total, nodesReady) come with the dump.
        status = self.status.model_dump(mode="json", by_alias=True, exclude_none=True)
        old = self.job.status
        changed = bool(status_patch(old, status))
        events: list[Transition] = list(self.notes)
        for t in transitions(list(old.get("conditions") or []), conditions):
            # Failed and Ready often flip together with the same words: one Event is enough.
            if not any(e.reason == t.reason and e.message == t.message for e in events):
                events.append(t)
        if self.wake_at is not None and not delete_job:
            due = seconds_until(self.wake_at, self.now) + 0.05
            requeue = due if requeue is None else min(requeue, due)
        return Plan(
            status=status,
            creates=tuple(creates),
            annotates=tuple(self.annotates),
            patches=tuple(patches),
            deletes=tuple(deletes),
            delete_job=delete_job,
            events=tuple(events),
            requeue_after=requeue,
            status_changed=changed,
        )
