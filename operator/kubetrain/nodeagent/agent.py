"""The poll loop: IMDS notices in, one Node patch per distinct notice out.

Never crashes on IMDS or API trouble: each failure is logged and retried with exponential backoff
(capped), and the loop keeps polling. A notice counts as recorded only after the API server
accepted the patch (or the Node already carried it), so an agent restart or a failed patch is
retried, never lost, and a recorded one is never patched again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kubetrain.nodeagent import notices
from kubetrain.nodeagent.imds import ImdsClient, ImdsError
from kubetrain.nodeagent.kube import Conflict, NodeApi
from kubetrain.nodeagent.notices import Notice, NoticeError

log = logging.getLogger("kubetrain.nodeagent")

_SOURCES: tuple[tuple[str, Callable[[str], Notice]], ...] = (
    (notices.SPOT_INSTANCE_ACTION_PATH, notices.parse_instance_action),
    (notices.REBALANCE_PATH, notices.parse_rebalance),
)
_CONFLICT_RETRIES = 5


@dataclass
class Backoff:
    """Delay before the next poll: `base` while healthy, doubling per consecutive failure."""

    base: float
    cap: float = 30.0
    failures: int = 0

    def ok(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1

    @property
    def delay(self) -> float:
        if self.failures == 0:
            return self.base
        return float(min(self.cap, self.base * 2 ** min(self.failures, 16)))


@dataclass
class NodeAgent:
    imds: ImdsClient
    nodes: NodeApi
    node_name: str
    interval: float = 1.0
    recorded: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    patches: int = 0  # Node patches sent (for logs and tests)

    def poll_once(self) -> list[Notice]:
        """Read every IMDS source once and record what is new. Raises on the first failure
        after trying every source, so one broken path never hides a notice on the other."""
        seen: list[Notice] = []
        errors: list[str] = []
        for path, parse in _SOURCES:
            try:
                body = self.imds.get(path)
                if body is None:
                    continue
                notice = parse(body)
                seen.append(notice)
                if notice.key not in self.recorded:
                    self.record(notice)
            except (ImdsError, NoticeError, Conflict) as exc:
                errors.append(str(exc))
            except Exception as exc:  # API errors, timeouts: keep polling, say what happened
                errors.append(f"{path}: recording on node {self.node_name} failed: {exc!r}")
        if errors:
            raise PollError("; ".join(errors))
        return seen

    def record(self, notice: Notice) -> None:
        """Taint + annotate the Node for `notice`, unless it already carries exactly that."""
        for _ in range(_CONFLICT_RETRIES):
            node = self.nodes.get_node(self.node_name)
            patch = notices.node_patch(node, notice)
            if patch is None:
                log.info(
                    "node %s already records %s notice %s", self.node_name, notice.kind, notice.body
                )
                break
            try:
                self.nodes.patch_node(self.node_name, patch)
            except Conflict:
                continue
            self.patches += 1
            log.warning(
                "node %s: %s notice %s -> taint %s=%s:%s",
                self.node_name,
                notice.kind,
                notice.body,
                notice.taint_key,
                notice.taint_value,
                notices.TAINT_EFFECT,
            )
            break
        else:
            raise Conflict(f"node {self.node_name} kept changing; will retry on the next poll")
        self.recorded.add(notice.key)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set (SIGTERM); the wait is interruptible, so shutdown is prompt."""
        backoff = Backoff(base=self.interval)
        log.info(
            "polling %s every %.1fs for node %s", self.imds.endpoint, self.interval, self.node_name
        )
        while not stop.is_set():
            try:
                self.poll_once()
                if backoff.failures:
                    log.info("IMDS and API reachable again after %d failures", backoff.failures)
                backoff.ok()
            except PollError as exc:
                backoff.failed()
                log.error(
                    "poll failed (%d in a row, next in %.0fs): %s",
                    backoff.failures,
                    backoff.delay,
                    exc,
                )
            stop.wait(backoff.delay)
        log.info("stopped after %d node patches", self.patches)


class PollError(RuntimeError):
    """One poll could not read or record every notice; the loop backs off and polls again."""
