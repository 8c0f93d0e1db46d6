"""Helpers shared by every test layer. Importable as `support` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy and return that; fail after `timeout`.

    Exceptions from the predicate count as "not yet" until the deadline, then the last one is
    chained to the failure so the test output says why the state was never reached.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_value = value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            label = what or getattr(predicate, "__name__", "condition")
            msg = f"timed out after {timeout:.0f}s waiting for {label}; last value: {last_value!r}"
            raise WaitTimeout(msg) from last_exc
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The stand-in kubelet (tests/e2e/local_kubelet.py) maps /fsx to one directory that every attempt
# of a job shares, as an FSx for Lustre volume would be. Jobs that it runs mount a volume there
# through podTemplate, so spec.checkpoint.dir is on a mounted volume (the CRD refuses checkpoints
# on the container's own filesystem, which a restart would lose).
SIM_FSX_POD_TEMPLATE: dict[str, object] = {
    "spec": {
        "volumes": [{"name": "sim-fsx", "emptyDir": {}}],
        "containers": [
            {"name": "worker", "volumeMounts": [{"name": "sim-fsx", "mountPath": "/fsx"}]}
        ],
    }
}
