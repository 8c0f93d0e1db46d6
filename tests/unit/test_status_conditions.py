"""Conditions keep their transition time, phase follows conditions, events follow transitions."""

from __future__ import annotations

import pytest

from kubetrain.status import (
    PHASE_CHECKPOINTING,
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_RESTARTING,
    PHASE_RUNNING,
    PHASE_STARTING,
    PHASE_SUCCEEDED,
    PHASE_SUSPENDED,
    Transition,
    derive_phase,
    parse_time,
    progress_only,
    rfc3339,
    set_condition,
    status_patch,
    transitions,
)

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def cond(type_: str, status: str, reason: str = "R", message: str = "m", at: str = T0) -> dict:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def test_set_condition_keeps_transition_time_when_status_unchanged() -> None:
    before = [cond("Ready", "False", "Pending", "0/4")]
    after = set_condition(before, "Ready", False, "Starting", "2/4", now=T1, observed_generation=3)
    assert after == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Starting",
            "message": "2/4",
            "lastTransitionTime": T0,
            "observedGeneration": 3,
        }
    ]
    assert before == [cond("Ready", "False", "Pending", "0/4")]  # input untouched


def test_set_condition_moves_transition_time_when_status_flips() -> None:
    after = set_condition([cond("Ready", "False")], "Ready", True, "AllRanksRunning", "4/4", now=T1)
    assert after == [cond("Ready", "True", "AllRanksRunning", "4/4", at=T1)]


def test_set_condition_appends_new_types_and_keeps_order() -> None:
    before = [cond("Ready", "False"), cond("Suspended", "True")]
    after = set_condition(before, "Ready", True, "X", "y", now=T1)
    after = set_condition(after, "Failed", True, "BackoffLimitExceeded", "z", now=T1)
    assert [c["type"] for c in after] == ["Ready", "Suspended", "Failed"]


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], PHASE_PENDING),
        ([cond("Ready", "False", "Pending")], PHASE_PENDING),
        ([cond("Ready", "False", "Unschedulable")], PHASE_PENDING),
        ([cond("Ready", "False", "Starting")], PHASE_STARTING),
        ([cond("Ready", "True", "AllRanksRunning")], PHASE_RUNNING),
        ([cond("Ready", "False", "RankFailed")], PHASE_RESTARTING),
        ([cond("Ready", "False", "NodeLost")], PHASE_RESTARTING),
        ([cond("Ready", "False", "StartupTimeout")], PHASE_RESTARTING),
        ([cond("Ready", "True"), cond("Checkpointing", "True")], PHASE_CHECKPOINTING),
        ([cond("Ready", "False"), cond("Suspended", "True")], PHASE_SUSPENDED),
        ([cond("Ready", "False"), cond("Succeeded", "True")], PHASE_SUCCEEDED),
        ([cond("Succeeded", "True"), cond("Failed", "True")], PHASE_FAILED),
        ([cond("Failed", "False"), cond("Ready", "True")], PHASE_RUNNING),
    ],
)
def test_phase_is_derived_from_conditions(conditions: list[dict], phase: str) -> None:
    assert derive_phase(conditions) == phase


def test_transitions_report_status_or_reason_changes_but_not_message_changes() -> None:
    old = [cond("Ready", "False", "Starting", "1/4"), cond("Suspended", "False", "Resumed")]
    new = [
        cond("Ready", "False", "Starting", "3/4"),  # message only: no event
        cond("Suspended", "True", "Suspended", "spec.suspend"),  # status flip
        cond("Failed", "True", "BackoffLimitExceeded", "used up"),  # new condition
    ]
    assert transitions(old, new) == [
        Transition("Suspended", "True", "Suspended", "spec.suspend"),
        Transition("Failed", "True", "BackoffLimitExceeded", "used up"),
    ]
    assert [t.warning for t in transitions(old, new)] == [False, True]


def test_status_patch_sets_changed_keys_and_nulls_removed_ones() -> None:
    old = {"phase": "Restarting", "attempt": 1, "restartAfter": T0}
    new = {"phase": "Starting", "attempt": 2}
    assert status_patch(old, new) == {"phase": "Starting", "attempt": 2, "restartAfter": None}
    assert status_patch(new, dict(new)) == {}


def test_time_round_trip() -> None:
    moment = parse_time(T1)
    assert moment is not None
    assert rfc3339(moment) == T1
    assert parse_time("garbage") is None
    assert parse_time(None) is None


def starting(ready: int, **extra: object) -> dict:
    message = f"attempt 1: {ready}/8 ranks running"
    return {
        "phase": PHASE_STARTING,
        "attempt": 1,
        "conditions": [cond("Ready", "False", "Starting", message)],
        "message": message,
        "nodes": {"ready": ready, "total": 8},
        "nodesReady": f"{ready}/8",
        **extra,
    }


def test_progress_only_is_a_count_moving_within_the_same_phase_and_reason() -> None:
    assert progress_only(starting(1), starting(3))
    assert not progress_only(starting(3), starting(3))  # nothing changed: nothing to write
    running = starting(8) | {"phase": PHASE_RUNNING}
    assert not progress_only(starting(7), running)  # a phase change
    new_reason = starting(3)
    new_reason["conditions"] = [cond("Ready", "False", "RankFailed", "attempt 1: 3/8")]
    assert not progress_only(starting(1), new_reason)
    assert not progress_only(starting(1), starting(3, nodes={"ready": 3, "total": 6}))  # resized
    assert not progress_only(starting(1), starting(3, attempt=2))
    assert not progress_only(starting(1), starting(3, goodput={"ratio": 0.5}))
