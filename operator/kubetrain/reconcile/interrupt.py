"""Interruptions with notice: detect them, ask the whole gang for a checkpoint, keep the timeline.

Pure functions over PodViews, NodeViews and the `status.interruptions` list; `decide` calls them.
The timeline is the only memory: an entry per (node, level) and attempt, so a repeated watch event,
an operator restart or a retried status write never issues a second request for the same event.

Levels: "red" (the node is going away: spot notice, Karpenter disruption, cordon, drain, the pod
being deleted) asks for an emergency checkpoint and restarts the gang elsewhere; "yellow" (a
rebalance recommendation) asks for an opportunistic checkpoint and training goes on.
Request ids are `<job>-<attempt>-<n>`, n = the entry's ordinal among the attempt's entries, so
the same situation always yields the same id (the runtime echoes it in its commit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from kubetrain.api.constants import (
    RED_INTERRUPTION_TAINTS,
    REQUEST_REASON_DRAIN,
    REQUEST_REASON_QUEUE_EVICTION,
    REQUEST_REASON_REBALANCE,
    REQUEST_REASON_RESIZE,
    REQUEST_REASON_SPEC_CHANGED,
    REQUEST_REASON_SPOT,
    REQUEST_REASON_SUSPEND,
    REQUEST_THEN_CONTINUE,
    SOURCE_CORDON,
    SOURCE_POD_DELETION,
    SOURCE_POD_DISRUPTION,
    SOURCE_QUEUE_EVICTION,
    SOURCE_RESIZE,
    SOURCE_SPEC_CHANGE,
    SOURCE_SUSPEND,
    SPOT_INTERRUPTION_TAINTS,
    YELLOW_INTERRUPTION_TAINTS,
)
from kubetrain.api.models import Interruption
from kubetrain.api.protocol import CheckpointRequest, Resumed
from kubetrain.reconcile.observe import NodeView, PodView
from kubetrain.status import parse_time, rfc3339

RED: Final = "red"
YELLOW: Final = "yellow"
# A spec change, a resize, a Kueue eviction and a user's suspend ask for a checkpoint like a red
# signal and restart or stop the gang, but are no interruption: counted against neither budget.
RED_REASONS: Final = frozenset(
    {
        REQUEST_REASON_SPOT,
        REQUEST_REASON_DRAIN,
        REQUEST_REASON_SPEC_CHANGED,
        REQUEST_REASON_RESIZE,
        REQUEST_REASON_QUEUE_EVICTION,
        REQUEST_REASON_SUSPEND,
    }
)
# Values of status.interruptions[].deadlineSource
DEADLINE_FROM_NOTICE: Final = "node-spot-notice"  # the node agent's notice time
DEADLINE_FROM_SPEC: Final = "spec.checkpointDeadlineSeconds"


@dataclass(frozen=True)
class Signal:
    """One node (or, for a pod without a node, one pod) announcing that it is going away."""

    node: str
    level: str  # RED | YELLOW
    source: str  # a taint key, "cordon", "pod-deletion", "pod-disruption-target"
    notice_time: str | None = None  # the node agent's notice time (RFC3339), if any

    @property
    def reason(self) -> str:
        if self.level == YELLOW:
            return REQUEST_REASON_REBALANCE
        if self.source == SOURCE_SPEC_CHANGE:
            return REQUEST_REASON_SPEC_CHANGED
        if self.source == SOURCE_RESIZE:
            return REQUEST_REASON_RESIZE
        if self.source == SOURCE_QUEUE_EVICTION:
            return REQUEST_REASON_QUEUE_EVICTION
        if self.source == SOURCE_SUSPEND:
            return REQUEST_REASON_SUSPEND
        if self.source in SPOT_INTERRUPTION_TAINTS:
            return REQUEST_REASON_SPOT
        return REQUEST_REASON_DRAIN


def _node_signal(view: NodeView) -> Signal | None:
    red = [t for t in RED_INTERRUPTION_TAINTS if t in view.interruption_taints]
    if red:
        return Signal(view.name, RED, red[0], view.notice_time)
    if view.unschedulable:
        return Signal(view.name, RED, SOURCE_CORDON, view.notice_time)
    yellow = [t for t in YELLOW_INTERRUPTION_TAINTS if t in view.interruption_taints]
    if yellow:
        return Signal(view.name, YELLOW, yellow[0])
    return None


def detect(pods: Sequence[PodView], nodes: Mapping[str, NodeView | None]) -> list[Signal]:
    """Signals for the live pods of one attempt: at most one per node, red before yellow.

    Pods on a node that is gone or NotReady are left to the node-lost path: no request can reach
    them. Finished pods announce nothing.
    """
    found: dict[str, Signal] = {}
    for pod in sorted(pods, key=lambda p: p.rank):
        if pod.finished:
            continue
        view = nodes.get(pod.node) if pod.node else None
        if pod.node and (view is None or not view.ready):
            continue
        signal = _node_signal(view) if view else None
        if (signal is None or signal.level == YELLOW) and (pod.deleting or pod.disruption):
            source = SOURCE_POD_DISRUPTION if pod.disruption else SOURCE_POD_DELETION
            signal = Signal(pod.node or pod.name, RED, source)
        if signal is None:
            continue
        old = found.get(signal.node)
        if old is None or (old.level == YELLOW and signal.level == RED):
            found[signal.node] = signal
    return sorted(found.values(), key=lambda s: (s.level != RED, s.node))


def level_of(entry: Interruption) -> str | None:
    if entry.reason in RED_REASONS:
        return RED
    if entry.reason == REQUEST_REASON_REBALANCE:
        return YELLOW
    return None  # node lost without notice: no request was ever possible


def request_id(job: str, records: Sequence[Interruption], index: int) -> str:
    attempt = records[index].attempt
    n = 1 + sum(1 for r in records[:index] if r.attempt == attempt)
    return f"{job}-{attempt}-{n}"


@dataclass(frozen=True)
class OpenRequest:
    """The checkpoint request the gang should be answering now."""

    id: str
    level: str
    reason: str
    deadline: dt.datetime
    members: tuple[int, ...]  # indexes in the records of the entries this request answers

    def message(self) -> CheckpointRequest:
        then = REQUEST_THEN_CONTINUE if self.level == YELLOW else None
        return CheckpointRequest(self.id, self.reason, self.deadline, then)


def _group(records: Sequence[Interruption], attempt: int, level: str) -> list[int]:
    return [i for i, r in enumerate(records) if r.attempt == attempt and level_of(r) == level]


def open_request(
    records: Sequence[Interruption], job: str, attempt: int, now: dt.datetime
) -> OpenRequest | None:
    """Red first: every red entry of the attempt shares the first one's request (a red always
    ends the attempt). Else the newest yellow request not yet committed nor past its deadline."""
    red = _group(records, attempt, RED)
    if red:
        head = records[red[0]]
        deadline = parse_time(head.deadline) or now
        return OpenRequest(
            request_id(job, records, red[0]), RED, str(head.reason), deadline, tuple(red)
        )
    yellow = [i for i in _group(records, attempt, YELLOW) if not records[i].committed_at]
    if not yellow:
        return None
    head_index = yellow[0]
    head = records[head_index]
    deadline = parse_time(head.deadline) or now
    if now >= deadline:
        return None
    members = tuple(
        i
        for i in yellow
        if records[i].requested_at == head.requested_at and records[i].deadline == head.deadline
    )
    return OpenRequest(
        request_id(job, records, head_index), YELLOW, REQUEST_REASON_REBALANCE, deadline, members
    )


def deadline_for(signal: Signal, now: dt.datetime, default_seconds: int) -> tuple[dt.datetime, str]:
    """The notice's own time when the node agent reported one still ahead, else now + default."""
    notice = parse_time(signal.notice_time)
    if notice is not None and notice > now:
        return notice, DEADLINE_FROM_NOTICE
    return now + dt.timedelta(seconds=default_seconds), DEADLINE_FROM_SPEC


@dataclass(frozen=True)
class Detected:
    index: int
    signal: Signal
    deadline_source: str | None  # None: joined a request already out


def record(
    records: list[Interruption],
    signals: Sequence[Signal],
    *,
    job: str,
    attempt: int,
    now: dt.datetime,
    default_deadline_seconds: int,
    checkpoint_step: int | None,
) -> list[Detected]:
    """Append an entry per new (node, level) of this attempt; idempotent across passes.

    A signal of a level whose request is already out joins it (same request time and deadline):
    the gang answers one request, and every node involved is avoided by the next attempt. A
    yellow while a red is out adds nothing: the emergency checkpoint covers it.
    """
    added: list[Detected] = []
    now_s = rfc3339(now)
    for signal in signals:
        known = any(
            r.attempt == attempt and r.node == (signal.node or None) and level_of(r) == signal.level
            for r in records
        )
        if known or (signal.level == YELLOW and _group(records, attempt, RED)):
            continue
        entry = Interruption(
            node=signal.node or None,
            source=signal.source,
            reason=signal.reason,
            detected_at=now_s,
            attempt=attempt,
            checkpoint_step=checkpoint_step,  # until a newer commit answers the request
        )
        current = open_request(records, job, attempt, now)
        source: str | None = None
        if current is not None and current.level == signal.level:
            head = records[current.members[0]]
            entry.requested_at = head.requested_at or now_s
            entry.deadline = head.deadline
            entry.deadline_source = head.deadline_source
        else:
            deadline, source = deadline_for(signal, now, default_deadline_seconds)
            entry.requested_at = now_s
            entry.deadline = rfc3339(deadline)
            entry.deadline_source = source
        records.append(entry)
        added.append(Detected(len(records) - 1, signal, source))
    return added


def missing_requests(pods: Sequence[PodView], request: OpenRequest) -> list[str]:
    """The live pods of the gang not yet carrying this request."""
    return [
        pod.name
        for pod in sorted(pods, key=lambda p: p.rank)
        if not (pod.finished or (pod.deleting and pod.node is None))
        and (pod.requested is None or pod.requested.id != request.id)
    ]


def conclude(
    records: list[Interruption],
    request: OpenRequest,
    now: dt.datetime,
    committed_step: int | None,
    fallback_step: int | None,
) -> None:
    """Close the request's entries: the commit that answered it (lost steps 0: the emergency save
    is at the step the gang had reached), or the checkpoint the gang will resume from instead."""
    for i in request.members:
        entry = records[i]
        if committed_step is not None:
            entry.committed_at = rfc3339(now)
            entry.checkpoint_step = committed_step
            entry.lost_steps = 0
        elif fallback_step is not None:
            entry.checkpoint_step = fallback_step


def copy_lost_steps(records: list[Interruption], attempt: int, resumed: Resumed) -> bool:
    """Rank 0 of `attempt` reports how many steps the previous attempt lost: put the number on the
    previous attempt's interruption entries (the runtime measured it, so it wins). True if changed.
    """
    lost = resumed.lost_steps
    if lost is None:
        return False
    changed = False
    for entry in records:
        if entry.attempt != attempt - 1 or level_of(entry) == YELLOW:
            continue
        step = entry.checkpoint_step if entry.committed_at else resumed.step
        if (entry.lost_steps, entry.checkpoint_step) != (lost, step):
            entry.lost_steps, entry.checkpoint_step = lost, step
            changed = True
    return changed
