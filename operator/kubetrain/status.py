"""Conditions and phase of a TrainingJob: pure functions over the camelCase status dict.

Conditions are the truth; `phase` is a one-word summary derived from them, so the two can never
disagree. Everything here is data in, data out (no clock, no client): the caller passes `now`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kubetrain.api.constants import (
    COND_CHECKPOINTING,
    COND_FAILED,
    COND_READY,
    COND_SUCCEEDED,
    COND_SUSPENDED,
)
from kubetrain.api.protocol import parse_time as parse_time
from kubetrain.api.protocol import rfc3339 as rfc3339

Condition = dict[str, Any]

PHASE_PENDING: Final = "Pending"
PHASE_STARTING: Final = "Starting"
PHASE_RUNNING: Final = "Running"
PHASE_CHECKPOINTING: Final = "Checkpointing"
PHASE_RESTARTING: Final = "Restarting"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
PHASE_SUSPENDED: Final = "Suspended"
PHASE_QUEUED: Final = "Queued"  # waiting for Kueue to admit the job's Workload
TERMINAL_PHASES: Final = frozenset({PHASE_SUCCEEDED, PHASE_FAILED})

# Reasons carried by the Ready condition while it is False; they pick the phase.
REASON_PENDING: Final = "Pending"  # waiting for the first attempt or for capacity
REASON_UNSCHEDULABLE: Final = "Unschedulable"  # some pods of the gang cannot be placed (yet)
# Gates lifted on counted room, but not every pod was bound within gangBindTimeoutSeconds (another
# workload took a node): the pods are deleted and the gang waits, gated, again (no budget counted).
REASON_GANG_BIND_TIMEOUT: Final = "GangBindTimeout"
REASON_STARTING: Final = "Starting"  # every pod placed, not all running
REASON_RUNNING: Final = "AllRanksRunning"
REASON_RESTARTING: Final = "Restarting"  # previous attempt torn down, next one pending
REASON_RANK_FAILED: Final = "RankFailed"
REASON_NODE_LOST: Final = "NodeLost"
REASON_STARTUP_TIMEOUT: Final = "StartupTimeout"
REASON_SUSPENDED: Final = "Suspended"
REASON_RESUMED: Final = "Resumed"
REASON_SUCCEEDED: Final = "AllRanksSucceeded"
REASON_BACKOFF_LIMIT: Final = "BackoffLimitExceeded"
REASON_INTERRUPTION_LIMIT: Final = "InterruptionLimitExceeded"
REASON_FINISHED: Final = "Finished"
# Ready=False while a gang restarts after an interruption with notice (spot, drain, cordon).
REASON_INTERRUPTED: Final = "Interrupted"
# Ready=False while a gang restarts to apply an edit of a field that shapes the pods (counted
# against neither budget).
REASON_SPEC_CHANGED: Final = "SpecChanged"
# Ready=False while a gang restarts because rank 0 reported no new step for progressTimeoutSeconds.
REASON_HANG: Final = "Hang"
# Ready=False while the next attempt waits for room for the whole gang (the message says what it
# needs and what is free where): no pods yet (an elastic gang waiting to shrink), or its pods
# gated (phase Pending).
REASON_WAITING_FOR_CAPACITY: Final = "WaitingForCapacity"
# Ready=False while an elastic gang running on fewer than spec.nodes checkpoints and restarts at
# full size (counted against neither budget).
REASON_RESIZED: Final = "Resized"
# Reasons of the Checkpointing condition: True while the gang answers a checkpoint request.
REASON_CHECKPOINT_REQUESTED: Final = "CheckpointRequested"
REASON_CHECKPOINT_COMMITTED: Final = "CheckpointCommitted"
REASON_CHECKPOINT_DEADLINE_MISSED: Final = "CheckpointDeadlineMissed"
REASON_CHECKPOINT_ABANDONED: Final = "CheckpointAbandoned"  # the gang broke before committing
# Ready=False while Kueue has not admitted the job's Workload (phase Queued); Ready=False while the
# gang stops because Kueue evicted (preempted) its Workload or the user suspended it.
REASON_QUEUED: Final = "Queued"
REASON_EVICTED: Final = "Evicted"
# Reasons of the Admitted condition (Kueue's admission of the job's Workload).
REASON_ADMITTED: Final = "Admitted"
REASON_NOT_ADMITTED: Final = "NotAdmitted"
# Event-only reasons (no condition of their own): the interruption timeline in `kubectl describe`.
REASON_INTERRUPTION_DETECTED: Final = "InterruptionDetected"
REASON_RESUMED_FROM_CHECKPOINT: Final = "ResumedFromCheckpoint"

_RESTARTING_REASONS: Final = frozenset(
    {
        REASON_RESTARTING,
        REASON_RANK_FAILED,
        REASON_NODE_LOST,
        REASON_STARTUP_TIMEOUT,
        REASON_GANG_BIND_TIMEOUT,
        REASON_INTERRUPTED,
        REASON_SPEC_CHANGED,
        REASON_RESIZED,
        REASON_HANG,
        REASON_EVICTED,
    }
)
# Reasons worth a Warning event rather than a Normal one.
WARNING_REASONS: Final = frozenset(
    {
        REASON_RANK_FAILED,
        REASON_NODE_LOST,
        REASON_HANG,
        REASON_STARTUP_TIMEOUT,
        REASON_GANG_BIND_TIMEOUT,
        REASON_UNSCHEDULABLE,
        REASON_BACKOFF_LIMIT,
        REASON_INTERRUPTION_LIMIT,
        REASON_INTERRUPTION_DETECTED,
        REASON_CHECKPOINT_DEADLINE_MISSED,
        REASON_CHECKPOINT_ABANDONED,
        "InvalidSpec",
    }
)


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def waits_for_room(status: Mapping[str, Any]) -> bool:
    """The gang waits for room to start (Ready=False WaitingForCapacity): gated, or its attempt
    not yet created."""
    ready = get_condition(status.get("conditions") or [], COND_READY)
    return ready is not None and ready.get("reason") == REASON_WAITING_FOR_CAPACITY


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return a new list with `type_` set; `lastTransitionTime` moves only when status flips.

    Keeping the time when only reason/message change is what makes "how long has it been not
    ready" answerable (jobset's updateCondition does the same). Order of other conditions is kept.
    """
    value = "True" if status else "False"
    old = get_condition(conditions, type_)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    new: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    out = [dict(c) for c in conditions if c.get("type") != type_]
    index = next((i for i, c in enumerate(conditions) if c.get("type") == type_), len(out))
    out.insert(index, new)
    return out


def derive_phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    """The summary users see in `kubectl get tj`, in priority order of the conditions."""
    if is_true(conditions, COND_FAILED):
        return PHASE_FAILED
    if is_true(conditions, COND_SUCCEEDED):
        return PHASE_SUCCEEDED
    if is_true(conditions, COND_SUSPENDED):
        return PHASE_SUSPENDED
    if is_true(conditions, COND_CHECKPOINTING):
        return PHASE_CHECKPOINTING
    ready = get_condition(conditions, COND_READY)
    if ready is None:
        return PHASE_PENDING
    if ready.get("status") == "True":
        return PHASE_RUNNING
    reason = ready.get("reason")
    if reason in _RESTARTING_REASONS:
        return PHASE_RESTARTING
    if reason == REASON_STARTING:
        return PHASE_STARTING
    if reason == REASON_QUEUED:
        return PHASE_QUEUED
    return PHASE_PENDING


@dataclass(frozen=True)
class Transition:
    """A condition whose status or reason changed: one Kubernetes Event each."""

    type: str
    status: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        return self.reason in WARNING_REASONS


def transitions(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[Transition]:
    """Conditions that are new, or whose status or reason differ from before.

    Message-only changes (e.g. "3/4 running" -> "4/4") are not transitions: an Event per message
    change would flood `kubectl describe`.
    """
    out = []
    for cond in new:
        before = get_condition(old, str(cond.get("type")))
        if (
            before is None
            or before.get("status") != cond.get("status")
            or before.get("reason") != cond.get("reason")
        ):
            out.append(
                Transition(
                    type=str(cond.get("type")),
                    status=str(cond.get("status")),
                    reason=str(cond.get("reason", "")),
                    message=str(cond.get("message", "")),
                )
            )
    return out


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch turning `old` into `new` (top-level keys; removed keys become None)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


# What only counts progress within a phase: ranks scheduled or running, in the Ready condition's
# message, `message`, `nodes.ready` and `nodesReady`. A change of these alone need not be written
# at once (kubetrain.reconcile.loop writes it at most every PROGRESS_WRITE_SECONDS): a gang of 8
# starting wrote its status ten times, each a request and an event for every watcher (issue 14).
PROGRESS_FIELDS: Final = frozenset({"message", "nodes", "nodesReady", "conditions"})


def progress_only(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when `new` differs from `old` only in progress counts (phase, reasons, condition
    statuses, sizes and everything else the same)."""
    changed = {key for key in set(old) | set(new) if old.get(key) != new.get(key)}
    if not changed or not changed <= PROGRESS_FIELDS:
        return False

    def without(value: Any, key: str) -> Any:
        if isinstance(value, Mapping):
            return {k: v for k, v in value.items() if k != key}
        return value

    old_conditions = [without(c, "message") for c in old.get("conditions") or []]
    new_conditions = [without(c, "message") for c in new.get("conditions") or []]
    return old_conditions == new_conditions and without(old.get("nodes"), "ready") == without(
        new.get("nodes"), "ready"
    )
