"""Turn SIGTERM into an exception so a component can stop its remote job before it exits.

KFP terminates a run by killing the task's pod, which delivers SIGTERM to the component process.
Without a handler the Python process dies and the SageMaker job or TrainingJob keeps running (and
billing). `terminate_with(cleanup)` raises `Terminated` out of whatever the main thread is doing
(a poll, a sleep), runs `cleanup` once, and exits with status 143.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from kubetrain_kfp.constants import EXIT_TERMINATED

log = logging.getLogger(__name__)


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives (BaseException: `except Exception` won't eat it)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received signal {signum}")


@contextmanager
def terminate_with(cleanup: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGTERM runs `cleanup()` and exits the process with status 143."""
    if threading.current_thread() is not threading.main_thread():
        # Signals are only delivered to the main thread; nothing to install elsewhere.
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except Terminated:
        # A second SIGTERM during cleanup must not abort the cleanup itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.warning("termination requested: cleaning up the remote job before exiting")
        try:
            cleanup()
        except Exception:
            log.exception("cleanup after termination failed; the remote job may still be running")
        sys.exit(EXIT_TERMINATED)
    finally:
        signal.signal(signal.SIGTERM, previous)
