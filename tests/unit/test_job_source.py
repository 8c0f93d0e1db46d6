"""A job's daemon and its view of the job: which job events wake it (kubetrain.handlers.
wake_on_job), when a pass reads the job from the API server and which status writes wait
(kubetrain.reconcile.loop.JobSource)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import pytest

from kubetrain import handlers, surface
from kubetrain.k8s import Kube
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


def test_a_progress_only_status_write_waits_after_the_last_write() -> None:
    """A gang of 8 starting wrote its status ten times (each count of ranks scheduled, then
    running); a count alone is now written at most every PROGRESS_WRITE_SECONDS, a phase change
    at once."""
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
    assert source.defer(plan(after), before) is None  # the wait is over: written now


def starting(ready: int) -> dict[str, Any]:
    message = f"attempt 1: {ready}/8 ranks running"
    condition = {"type": "Ready", "status": "False", "reason": "Starting", "message": message}
    return {
        "phase": "Starting",
        "conditions": [condition],
        "message": message,
        "nodes": {"ready": ready, "total": 8},
    }


class CountingKube:
    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored
        self.reads = 0

    async def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        return self.stored


def test_a_pass_reads_the_job_only_when_the_watchs_view_may_be_stale() -> None:
    def job(version: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"metadata": {"name": "llm", "resourceVersion": version}}
        return body | ({"status": status} if status is not None else {})

    def read(source: JobSource, kube: CountingKube) -> Any:
        return asyncio.run(source.read(cast(Kube, kube), "ml", "llm"))

    new = CountingKube(job("5", {"phase": "Pending"}))
    source = JobSource(job("4"))  # a new job: no status yet, nothing of ours to be stale about
    assert read(source, new) == job("4") and new.reads == 0
    source.wrote("5")
    source.live = job("4")  # our write's echo not delivered yet: read it
    assert read(source, new) == job("5", {"phase": "Pending"}) and new.reads == 1
    source.live = job("5", {"phase": "Pending"})  # the echo: the view holds our write
    assert read(source, new) == source.live and new.reads == 1
    restarted = JobSource(job("9", {"phase": "Running", "attempt": 3}))
    assert read(restarted, new) and new.reads == 2  # an operator restart: read once


class StatusKube(CountingKube):
    """get_job, a status write that bumps the version, and Events (kubetrain.surface's calls)."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__(stored)
        self.events: list[str] = []

    async def patch_job_status(self, namespace: str, name: str, patch: dict[str, Any]) -> str:
        version = str(int(self.stored["metadata"]["resourceVersion"]) + 1)
        self.stored = self.stored | {"status": patch}
        self.stored["metadata"] = self.stored["metadata"] | {"resourceVersion": version}
        return version

    async def post_event(self, body: Any, *, reason: str, message: str, warning: bool) -> None:
        self.events.append(reason)


def test_the_daemons_condition_writes_move_its_view_so_the_next_pass_keeps_them() -> None:
    """CI caught SpecWarning vanishing: the daemon wrote its status (v5), then the warning (v6);
    the next pass took the watch's v5 for current and its merge patch of the whole conditions
    list dropped the warning, which was never written again."""
    spec = {"capacity": {"type": "spot"}}
    ours = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
    v5 = {"metadata": {"name": "llm", "generation": 1, "resourceVersion": "5"}, "spec": spec}
    v5["status"] = ours
    kube = StatusKube(v5)
    source = JobSource()
    source.wrote("5")  # the pass's own status write
    tracker = surface.ErrorTracker()
    log = logging.getLogger("test")
    asyncio.run(surface.on_success(cast(Kube, kube), "ml", "llm", v5, tracker, log, source.wrote))
    assert kube.events == ["NoDurableCheckpoint"]
    assert source.known == "6"
    source.live = v5  # the watch brings the pass's own write first
    fresh = asyncio.run(source.read(cast(Kube, kube), "ml", "llm"))
    assert fresh is not None
    assert any(c["type"] == "SpecWarning" for c in fresh["status"]["conditions"])
