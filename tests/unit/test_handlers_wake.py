"""Which job events wake a job's daemon (kubetrain.handlers.wake_on_job), and which of its
status writes wait (kubetrain.reconcile.loop.JobSource.defer)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from kubetrain import handlers
from kubetrain.reconcile.loop import PROGRESS_WRITE_SECONDS, JobSource
from kubetrain.reconcile.plan import Plan


def test_the_echo_of_the_daemons_own_write_does_not_wake_it_and_anything_else_does() -> None:
    memo = kopf.Memo()
    memo.wakeups = handlers.Wakeups()
    memo.sources = {}
    key = ("ml", "llm")
    woken = memo.wakeups.register(key)
    source = memo.sources[key] = JobSource()
    source.wrote("17")

    def event(version: str) -> bool:
        woken.clear()
        body = kopf.Body(
            {"metadata": {"name": "llm", "namespace": "ml", "resourceVersion": version}}
        )
        asyncio.run(handlers.wake_on_job(name="llm", namespace="ml", body=body, memo=memo))
        return woken.is_set()

    assert not event("17")  # our own status write coming back
    assert event("18")  # someone else's change (a spec edit, kopf's finalizer, a label)
    del memo.sources[key]  # no daemon yet (it is starting): every event wakes
    assert event("17")


def test_a_progress_only_status_write_waits_a_second_after_the_last_write() -> None:
    """A gang of 8 starting wrote its status ten times (each count of ranks scheduled, then
    running); a count alone is now written at most once a second, a phase change at once."""
    clock = [100.0]
    source = JobSource(clock=lambda: clock[0])

    def plan(status: dict[str, Any], **extra: Any) -> Plan:
        return Plan(status=status, status_changed=True, **extra)

    before, after = starting(1), starting(3)
    assert source.defer(plan(after), before) is None  # nothing written yet by this daemon
    source.wrote("17")
    clock[0] += 0.25
    assert source.defer(plan(after), before) == pytest.approx(PROGRESS_WRITE_SECONDS - 0.25)
    assert source.defer(plan(after | {"phase": "Running"}), before) is None
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert source.defer(plan(after, creates=(pod,)), before) is None  # comes with its creates
    clock[0] += PROGRESS_WRITE_SECONDS
    assert source.defer(plan(after), before) is None  # a second on: written now


def starting(ready: int) -> dict[str, Any]:
    message = f"attempt 1: {ready}/8 ranks running"
    condition = {"type": "Ready", "status": "False", "reason": "Starting", "message": message}
    return {
        "phase": "Starting",
        "conditions": [condition],
        "message": message,
        "nodes": {"ready": ready, "total": 8},
    }
