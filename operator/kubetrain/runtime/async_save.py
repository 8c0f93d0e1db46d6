"""Periodic saves in the background: training stalls only for the copy to host memory.

A codec that can split its save (`stage` in the training thread, `write` anywhere) is saved
asynchronously for periodic checkpoints:

1. every rank stages: a private copy of its state in host memory (serialised bytes for pickle and
   `torch.save`, CPU tensors for DCP), so training may change the live tensors right away;
2. a daemon thread per rank writes the copy into the fresh data directory and fsyncs it;
3. at a later step boundary all ranks agree (one all-reduce) that every write finished, and rank
   0 commits the manifest exactly as a synchronous save does: data first, manifest last.

Rules that keep the commit protocol intact:

- At most one save is in flight. A periodic save that comes due while one is still writing
  *waits* for it (commit, then start the next): the checkpoint interval users set is kept, and
  slow storage shows up as a stall in the benchmark instead of silently stretching the interval.
- An emergency save (checkpoint request, SIGTERM) stays synchronous. It first waits for the
  in-flight save (bounded by half the time left before the notice's deadline) and commits it
  if every rank finished, so there is a fallback checkpoint; a save still running then is
  abandoned: it is never committed, its data directory is garbage to collect later, and no
  further save runs in the background until its thread has finished.
- A kill at any moment leaves at worst a data directory without a manifest, which discovery
  never looks at.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kubetrain.runtime.manifest import Manifest


@runtime_checkable
class StagedCodec(Protocol):
    """A codec whose save splits into a quick copy (`stage`) and a slow `write`."""

    def stage(self, state: Mapping[str, Any], rank: int) -> Any:
        """A private copy of this rank's state in host memory; training may go on after it."""
        ...

    def write(self, directory: Path, staged: Any, rank: int) -> None:
        """Write what `stage` returned under `directory`, durably (fsync) before returning."""
        ...


# Per-rank state of an in-flight save, ordered so that all-reduce(MAX) gives the gang's state.
DONE, FAILED, RUNNING = 0, 1, 2


@dataclass
class InFlight:
    """One background save: the manifest to commit (files filled in by rank 0 at commit)."""

    manifest: Manifest
    future: Future[None]
    started: float  # monotonic, when the save began (staging included)
    stall_seconds: float  # how long the training thread was held (agreement, copy, hand-off)
    request_id: str | None = None

    def state(self) -> int:
        if not self.future.done():
            return RUNNING
        return FAILED if self.future.exception() is not None else DONE

    def wait(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for this rank's write; its state then."""
        wait([self.future], timeout=max(0.0, timeout))
        return self.state()


def in_background(fn: Callable[[], None], name: str) -> Future[None]:
    """Run `fn` in a daemon thread: a hung write must never keep a finished process alive."""
    future: Future[None] = Future()
    future.set_running_or_notify_cancel()

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # reported through the future, decided on by all ranks
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
