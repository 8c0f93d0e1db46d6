"""The status being computed in one reconcile pass, plus what the pass wants done besides.

Shared by `decide` and `notice` so each stays a small module; no I/O, no clock (`now` is given).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from typing import Any

from kubetrain.api.constants import COND_FAILED, COND_READY
from kubetrain.api.models import TrainingJobStatus
from kubetrain.reconcile.plan import JobView, Plan, PodAnnotate, PodDelete
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


class Draft:
    """The status being computed; conditions are updated through `cond` so times stay right."""

    def __init__(self, job: JobView, now: dt.datetime) -> None:
        self.job = job
        self.now = now
        self.now_s = rfc3339(now)
        self.status: dict[str, Any] = copy.deepcopy(dict(job.status))
        self.status.setdefault("attempt", 0)
        self.status.setdefault("restarts", {"failures": 0, "interruptions": 0})
        self.status["restarts"].setdefault("failures", 0)
        self.status["restarts"].setdefault("interruptions", 0)
        # Beyond creates/deletes: checkpoint requests to write and timeline Events to post.
        self.annotates: list[PodAnnotate] = []
        self.notes: list[Transition] = []
        self.wake_at: dt.datetime | None = None  # e.g. a request's deadline

    @property
    def attempt(self) -> int:
        return int(self.status["attempt"])

    def note(self, reason: str, message: str) -> None:
        """An Event with no condition of its own (the interruption timeline)."""
        self.notes.append(Transition("Interruption", "", reason, message))

    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.status.get("interruptions") or []]

    def set_records(self, records: list[dict[str, Any]]) -> None:
        self.status["interruptions"] = records[-MAX_INTERRUPTION_RECORDS:]

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return list(self.status.get("conditions") or [])

    def cond(self, type_: str, value: bool, reason: str, message: str) -> None:
        self.status["conditions"] = set_condition(
            self.conditions,
            type_,
            value,
            reason,
            message,
            now=self.now_s,
            observed_generation=self.job.generation,
        )

    def drop(self, *keys: str) -> None:
        for key in keys:
            self.status.pop(key, None)

    def finish(
        self,
        *,
        creates: Sequence[dict[str, Any]] = (),
        deletes: Sequence[PodDelete] = (),
        requeue: float | None = RESYNC_SECONDS,
        delete_job: bool = False,
    ) -> Plan:
        self.status["phase"] = derive_phase(self.conditions)
        self.status["observedGeneration"] = self.job.generation
        # Through the API model: what the CRD would prune never gets written, and the computed
        # printer-column fields (restarts.total, nodesReady) are always in step.
        self.status = TrainingJobStatus.model_validate(self.status).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        headline = get_condition(self.conditions, COND_FAILED)
        if not (headline and headline.get("status") == "True"):
            headline = get_condition(self.conditions, COND_READY)
        if headline and headline.get("message"):
            self.status["message"] = headline["message"]
        old = self.job.status
        changed = bool(status_patch(old, self.status))
        events: list[Transition] = list(self.notes)
        for t in transitions(list(old.get("conditions") or []), self.conditions):
            # Failed and Ready often flip together with the same words: one Event is enough.
            if not any(e.reason == t.reason and e.message == t.message for e in events):
                events.append(t)
        if self.wake_at is not None and not delete_job:
            due = seconds_until(self.wake_at, self.now) + 0.05
            requeue = due if requeue is None else min(requeue, due)
        return Plan(
            status=self.status,
            creates=tuple(creates),
            annotates=tuple(self.annotates),
            deletes=tuple(deletes),
            delete_job=delete_job,
            events=tuple(events),
            requeue_after=requeue,
            status_changed=changed,
        )
