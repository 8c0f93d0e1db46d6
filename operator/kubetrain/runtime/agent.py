"""The checkpoint agent: the operator's requests in, the commits out, through our own Pod.

One agent per pod (the process with LOCAL_RANK 0): the operator annotates every pod of the gang,
and the all-reduced stop flag carries the request to the other processes of the pod anyway.
Rank 0 reports each commit on its pod so `status.checkpoint` follows the newest one.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_PROGRESS,
    ANNOTATION_RESUMED,
    DEFAULT_PROGRESS_SECONDS,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest, Progress, Resumed
from kubetrain.runtime.signals import StopFlag, StopLevel

log = logging.getLogger(__name__)


class PodLike(Protocol):
    """The part of PodAPI the agent uses (a fake in unit tests, the real API in integration)."""

    def annotations(self) -> dict[str, str]: ...

    def annotate(self, key: str, value: str) -> None: ...

    def watch_annotations(self, on_change: Any, stop: threading.Event) -> None: ...


def request_level(request: CheckpointRequest) -> StopLevel:
    """Emergency unless the operator says to keep going (`then: continue`, or a rebalance hint)."""
    return StopLevel.SAVE if request.continues else StopLevel.SAVE_AND_EXIT


class CheckpointAgent:
    def __init__(
        self, pod: PodLike, flag: StopFlag, progress_seconds: float = DEFAULT_PROGRESS_SECONDS
    ) -> None:
        self.pod, self.flag = pod, flag
        self.seen: set[str] = set()  # request ids acted on
        self.answered: set[str] = set()  # ids reported committed
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress_seconds = progress_seconds
        self._progress: Progress | None = None  # newest step, written by the reporter thread
        self._progress_thread: threading.Thread | None = None
        self._sent: int | None = None  # the step last written on the pod

    def start(self) -> None:
        """Ignore a request this pod already answered (a restarted process), then watch."""
        try:
            committed = CheckpointCommitted.decode(
                self.pod.annotations().get(ANNOTATION_CHECKPOINT_COMMITTED)
            )
            if committed:
                self.seen.add(committed.id)
                self.answered.add(committed.id)
        except Exception as exc:  # the API being down must not stop training
            log.warning("checkpoint agent: reading own pod failed: %s", exc)
        self._thread = threading.Thread(
            target=self.pod.watch_annotations,
            args=(self.on_annotations, self.stop),
            name="kubetrain-checkpoint-agent",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop watching; write the last step if the reporter has not yet (goodput is exact)."""
        self.stop.set()
        progress = self._progress
        if progress is not None and progress.step != self._sent:
            try:
                self.pod.annotate(ANNOTATION_PROGRESS, progress.encode())
                self._sent = progress.step
            except Exception as exc:
                log.warning("reporting the last progress on the pod failed: %s", exc)

    def report_progress(self, step: int, saving_seconds: float = 0.0) -> None:
        """Note the newest step (rank 0 calls this every step; it never blocks training). A
        background thread writes it on the pod at most every `progress_seconds`, so a thousand
        jobs cost the API server little and the operator's hang detection has a heartbeat."""
        self._progress = Progress(step, datetime.now(UTC), saving_seconds)
        if self._progress_thread is None:
            self._progress_thread = threading.Thread(
                target=self._report_loop, name="kubetrain-progress", daemon=True
            )
            self._progress_thread.start()

    def _report_loop(self) -> None:
        while True:
            progress = self._progress
            if progress is not None and progress.step != self._sent:
                try:
                    self.pod.annotate(ANNOTATION_PROGRESS, progress.encode())
                    self._sent = progress.step
                except Exception as exc:  # the API being down must not stop training
                    log.warning("reporting progress on the pod failed: %s", exc)
            if self.stop.wait(self.progress_seconds):
                return

    def on_annotations(self, annotations: dict[str, str]) -> None:
        request = CheckpointRequest.decode(annotations.get(ANNOTATION_CHECKPOINT_REQUEST))
        if request is None or request.id in self.seen:
            return
        self.seen.add(request.id)
        log.info("checkpoint request %s (%s) on own pod", request.id, request.reason)
        deadline = request.deadline.timestamp() if request.deadline else None
        self.flag.request(request_level(request), request.reason, request.id, deadline)

    def pending_request_id(self) -> str | None:
        """A request on our pod not answered yet: the all-reduce may beat our own watch to it."""
        try:
            raw = self.pod.annotations().get(ANNOTATION_CHECKPOINT_REQUEST)
        except Exception:
            return None
        request = CheckpointRequest.decode(raw)
        if request is not None and request.id not in self.answered:
            return request.id
        return None

    def report_resumed(
        self,
        *,
        step: int,
        previous_step: int | None,
        manifest: str,
        saved_world_size: int | None = None,
        world_size: int | None = None,
    ) -> None:
        """Patch `resumed` on our pod: the step restored and how many steps the previous attempt
        had done past it (lost work), so the operator can put the number on its timeline, and
        the world size that wrote the checkpoint against this attempt's (an elastic resize)."""
        report = Resumed(
            step=step,
            previous_step=previous_step,
            manifest=manifest,
            saved_world_size=saved_world_size,
            world_size=world_size,
        )
        self.pod.annotate(ANNOTATION_RESUMED, report.encode())

    def report_committed(
        self, *, step: int, manifest: str, kind: str, checkpoint_id: str, request_id: str | None
    ) -> str:
        """Patch `checkpoint-committed` on our pod; `id` echoes the request answered, if any.

        A save that answers no request (periodic) reports the checkpoint's own id.
        """
        ident = request_id
        if ident is None and kind == "emergency":
            ident = self.pending_request_id()
        ident = ident or checkpoint_id
        value = CheckpointCommitted(id=ident, step=step, manifest=manifest, kind=kind)
        self.answered.add(ident)
        self.seen.add(ident)
        self.pod.annotate(ANNOTATION_CHECKPOINT_COMMITTED, value.encode())
        return ident
