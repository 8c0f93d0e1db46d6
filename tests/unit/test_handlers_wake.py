"""Which job events wake a job's daemon (kubetrain.handlers.wake_on_job)."""

from __future__ import annotations

import asyncio

import kopf

from kubetrain import handlers
from kubetrain.reconcile.loop import JobSource


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
