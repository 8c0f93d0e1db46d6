"""The stop flag: the single path from any notice (SIGTERM, SIGUSR1, the operator's request) to a save.

Signal handlers only record the signal number (one attribute store, async-signal-safe enough for
Python and free of locks the interrupted main thread might hold); the training loop looks at the
flag at the next step boundary and does the saving there, never inside the handler.
"""

from __future__ import annotations

import enum
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


class StopLevel(enum.IntEnum):
    """Ordered so that ranks agree with one all-reduce(MAX)."""

    NONE = 0
    SAVE = 1  # checkpoint now and keep training (e.g. a rebalance recommendation)
    SAVE_AND_EXIT = 2  # emergency: checkpoint now, then exit 83


@dataclass(frozen=True)
class StopRequest:
    level: StopLevel
    reason: str
    request_id: str | None = None
    deadline: float | None = None  # epoch seconds, when the notice said it would end


class StopFlag:
    """Set by signals and by the checkpoint agent; read (and cleared) by the training loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request: StopRequest | None = None
        self._signal: int | None = None  # written by the signal handler without the lock
        self._changed = threading.Event()

    def request(
        self,
        level: StopLevel,
        reason: str,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> None:
        """Raise the flag; a stronger level wins, an equal one keeps the earliest deadline."""
        new = StopRequest(level, reason, request_id, deadline)
        with self._lock:
            old = self._request
            if old is None or new.level > old.level:
                self._request = new
            elif new.level == old.level:
                deadlines = [d for d in (old.deadline, new.deadline) if d is not None]
                self._request = StopRequest(
                    old.level,
                    old.reason,
                    old.request_id or new.request_id,
                    min(deadlines) if deadlines else None,
                )
        self._changed.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal = signum

    def peek(self) -> StopRequest | None:
        """The current request (signals count as SAVE_AND_EXIT) without clearing it."""
        signum = self._signal
        with self._lock:
            request = self._request
        if signum is not None and (request is None or request.level < StopLevel.SAVE_AND_EXIT):
            name = signal.Signals(signum).name
            return StopRequest(
                StopLevel.SAVE_AND_EXIT, name, request.request_id if request else None
            )
        return request

    @property
    def level(self) -> StopLevel:
        request = self.peek()
        return request.level if request else StopLevel.NONE

    def clear_save(self) -> None:
        """After a SAVE (keep training) checkpoint; an exit request is never cleared."""
        with self._lock:
            if self._request is not None and self._request.level == StopLevel.SAVE:
                self._request = None

    def wait(self, timeout: float) -> bool:
        """Block until `request` is called (for tests and the agent); False on timeout."""
        return self._changed.wait(timeout)


def install_signal_handlers(
    flag: StopFlag, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> None:
    """Route SIGTERM/SIGUSR1 to `flag`. Python allows this only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "install_signal_handlers must run in the main thread; call Checkpointer.from_env() "
            "from the training script's main thread or pass install_signals=False"
        )
    for sig in signals:
        signal.signal(sig, flag._on_signal)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """`worker_init_fn` for DataLoader workers: survive the SIGTERM that torchrun sends by killpg.

    Without it the workers die first and the main process fails fetching the next batch before
    it can save (KempnerForge#177). They still exit when the main process does.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.time()
