"""Prometheus metrics and readiness of the operator.

Derived, not sprinkled: job metrics come from one place, `record_status(job, new_status)`, called
where a reconcile pass writes status (reconcile/act.py), comparing the status the pass read with
the one it wrote. Restarts, attempts, interruptions, latencies and lost steps are all visible
there as status transitions, so the reconcile logic itself carries no metrics code. Reconcile
timing and errors are measured around the pass (handlers.py); watch health comes from kopf's watch
streams (`instrument_kopf_watches`).

Labels stay bounded: phase, reason, source, checkpoint kind and watched resource are small fixed
sets; the only per-object labels are namespace and job on the checkpoint age (one series per live
job, dropped when the job's daemon ends). Never a pod or node name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from kubetrain.api.models import PHASES
from kubetrain.status import TERMINAL_PHASES, parse_time

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# A spot notice must be answered within two minutes: buckets resolve the first seconds finely.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300)
# The watches a ready operator has listed once and keeps open.
REQUIRED_WATCHES = ("trainingjobs", "pods", "nodes")
PEERING_WATCHES = frozenset({"kopfpeerings", "clusterkopfpeerings"})  # peering listed: a peer

ATTEMPTS = Counter(
    "kubetrain_attempts_started_total",
    "Gang attempts started (attempt 1 and every restart).",
    registry=REGISTRY,
)
RESTARTS = Counter(
    "kubetrain_restarts_total",
    "Gang restarts, by what they count against: failure (maxRestarts) or interruption "
    "(maxInterruptions).",
    ["reason"],
    registry=REGISTRY,
)
INTERRUPTIONS = Counter(
    "kubetrain_interruptions_total",
    "Interruptions detected, by signal source (a taint key, cordon, pod-deletion, ...).",
    ["source"],
    registry=REGISTRY,
)
NOTICE_TO_REQUEST = Histogram(
    "kubetrain_interruption_notice_to_request_seconds",
    "From detecting an interruption to the checkpoint request on the gang's pods.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
NOTICE_TO_COMMIT = Histogram(
    "kubetrain_interruption_notice_to_commit_seconds",
    "From detecting an interruption to the gang's committed checkpoint.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LOST_STEPS = Counter(
    "kubetrain_lost_steps_total",
    "Training steps redone after interruptions (progress past the checkpoint resumed from).",
    registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "kubetrain_checkpoints_committed_total",
    "Checkpoints committed by gangs, by kind (periodic or emergency).",
    ["kind"],
    registry=REGISTRY,
)
FINISHED = Counter(
    "kubetrain_jobs_finished_total",
    "Jobs that reached a terminal phase.",
    ["phase"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "kubetrain_reconcile_duration_seconds",
    "Duration of one reconcile pass of one job.",
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "kubetrain_reconcile_errors_total",
    "Reconcile passes that raised (retried after a backoff).",
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "kubetrain_watch_restarts_total",
    "Watch streams that ended and were reopened (errors, 410 Gone, peering pauses).",
    ["resource"],
    registry=REGISTRY,
)


@dataclass
class _Job:
    phase: str = ""
    committed_at: float | None = None  # unix time of status.checkpoint.committedAt
    goodput: Mapping[str, Any] = field(default_factory=dict)  # status.goodput
    size: Mapping[str, Any] = field(default_factory=dict)  # status.size (elastic jobs)
    # interruption key -> monotonic time this process first saw it detected
    detected: dict[tuple[str, str], float] = field(default_factory=dict)


class _Jobs(Collector):
    """Live per-job state, exposed as gauges computed at scrape time."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], _Job] = {}

    def collect(self) -> Iterator[Metric]:
        by_phase = GaugeMetricFamily(
            "kubetrain_jobs", "TrainingJobs this operator runs, by phase.", labels=["phase"]
        )
        counts = dict.fromkeys(PHASES, 0)
        for job in self.jobs.values():
            if job.phase:
                counts[job.phase] = counts.get(job.phase, 0) + 1
        for phase, n in counts.items():
            by_phase.add_metric([phase], n)
        yield by_phase
        age = GaugeMetricFamily(
            "kubetrain_checkpoint_age_seconds",
            "Seconds since the newest committed checkpoint of each unfinished job.",
            labels=["namespace", "job"],
        )
        now = time.time()
        for (namespace, name), job in sorted(self.jobs.items()):
            if job.committed_at is not None and job.phase not in TERMINAL_PHASES:
                age.add_metric([namespace, name], max(0.0, now - job.committed_at))
        yield age
        ratio = GaugeMetricFamily(
            "kubetrain_goodput_ratio",
            "Productive training time / wall time of each job (status.goodput.ratio).",
            labels=["namespace", "job"],
        )
        spent = GaugeMetricFamily(
            "kubetrain_job_time_seconds",
            "Where each job's wall time went (status.goodput.total), as of its newest recorded "
            "event: productive, startup, checkpointing, waiting, backoff, recompute, stalled.",
            labels=["namespace", "job", "use"],
        )
        for (namespace, name), job in sorted(self.jobs.items()):
            if job.goodput.get("ratio") is not None:
                ratio.add_metric([namespace, name], float(job.goodput["ratio"]))
            for use, seconds in (job.goodput.get("total") or {}).items():
                if use != "wall":
                    spent.add_metric([namespace, name, use], float(seconds))
        yield ratio
        yield spent
        nodes = GaugeMetricFamily(
            "kubetrain_job_nodes",
            "Worker pods of each elastic job's current attempt and the spec's nodes "
            "(status.size: current below desired while it runs short).",
            labels=["namespace", "job", "size"],
        )
        for (namespace, name), job in sorted(self.jobs.items()):
            if job.size and job.phase not in TERMINAL_PHASES:
                for which in ("current", "desired"):
                    nodes.add_metric([namespace, name, which], float(job.size.get(which) or 0))
        yield nodes


class _Watches(Collector):
    """kopf's watch streams: (resource plural, namespace) -> listing | up | down."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], str] = {}
        self.instrumented = False
        self.paused: Any = None  # kopf's operator-paused ToggleSet (peering), once seen

    def ready(self) -> tuple[bool, str]:
        if not self.instrumented:
            return True, "watch streams not instrumented (kopf internals changed): ready"
        up = {plural for (plural, _), s in self.state.items() if s == "up"}
        if self.paused is not None and self.paused.is_on() and up & PEERING_WATCHES:
            # kopf peering paused this replica (another one is active, or it is still deciding):
            # ready to take over, and available, so a PodDisruptionBudget lets drains go.
            return True, "standby: paused by peering"
        missing = [p for p in REQUIRED_WATCHES if p not in up]
        waiting = sorted(f"{p}@{ns or '*'}:{s}" for (p, ns), s in self.state.items() if s != "up")
        if missing or waiting:
            return False, f"not listed yet: {', '.join(missing + waiting)}"
        return True, "watching: " + ", ".join(sorted({p for p, _ in self.state}))

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "kubetrain_watch_up",
            "1 when every watch stream of the resource has listed and is open.",
            labels=["resource"],
        )
        plurals = sorted({p for p, _ in self.state} | set(REQUIRED_WATCHES))
        for plural in plurals:
            states = [s for (p, _), s in self.state.items() if p == plural]
            gauge.add_metric([plural], 1 if states and all(s == "up" for s in states) else 0)
        yield gauge
        ready = GaugeMetricFamily(
            "kubetrain_ready", "1 when the operator's watches are established (readiness)."
        )
        ready.add_metric([], 1 if self.ready()[0] else 0)
        yield ready


class _ApiRequests(Collector):
    """The operator's own requests to the API server (kubetrain.k8s.Kube.requests, set at
    startup): what each gang costs the control plane."""

    def __init__(self) -> None:
        self.counts: Mapping[tuple[str, str, int], int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "kubetrain_api_requests",
            "Requests the operator sent to the API server, by verb, resource and HTTP status.",
            labels=["verb", "resource", "code"],
        )
        for (verb, resource, code), count in sorted(self.counts.items()):
            family.add_metric([verb, resource, str(code)], float(count))
        yield family


JOBS = _Jobs()
WATCHES = _Watches()
API_REQUESTS = _ApiRequests()
REGISTRY.register(JOBS)
REGISTRY.register(WATCHES)
REGISTRY.register(API_REQUESTS)


def _interruption_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    return (str(entry.get("node") or ""), str(entry.get("detectedAt") or ""))


def _seconds_between(start: object, end: object) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else max(0.0, (b - a).total_seconds())


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def record_status(job: Mapping[str, Any], new: Mapping[str, Any] | None) -> None:
    """Count what changed between the job's status as read (`job`) and as written (`new`).

    `new` None: nothing written this pass (the job's live gauges are still refreshed). Call it
    once per pass, after the status write succeeded, so every transition is counted once.
    """
    meta = job.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    old: Mapping[str, Any] = job.get("status") or {}
    state = JOBS.jobs.setdefault(key, _Job())
    now = time.monotonic()
    if new is not None:
        _count_transitions(state, old, new, now)
    current = new if new is not None else old
    state.phase = str(current.get("phase") or "")
    committed = parse_time((current.get("checkpoint") or {}).get("committedAt"))
    state.committed_at = committed.timestamp() if committed else None
    state.goodput = current.get("goodput") or {}
    state.size = current.get("size") or {}


def _count_transitions(
    state: _Job, old: Mapping[str, Any], new: Mapping[str, Any], now: float
) -> None:
    attempts = _int(new.get("attempt")) - _int(old.get("attempt"))
    if attempts > 0:
        ATTEMPTS.inc(attempts)
    old_restarts, new_restarts = old.get("restarts") or {}, new.get("restarts") or {}
    for field_, reason in (("failures", "failure"), ("interruptions", "interruption")):
        delta = _int(new_restarts.get(field_)) - _int(old_restarts.get(field_))
        if delta > 0:
            RESTARTS.labels(reason).inc(delta)
    phase = new.get("phase")
    if phase in TERMINAL_PHASES and old.get("phase") != phase:
        FINISHED.labels(phase).inc()
    old_ckpt, new_ckpt = old.get("checkpoint") or {}, new.get("checkpoint") or {}
    if new_ckpt and (new_ckpt.get("id"), new_ckpt.get("step")) != (
        old_ckpt.get("id"),
        old_ckpt.get("step"),
    ):
        CHECKPOINTS.labels("emergency" if new_ckpt.get("kind") == "emergency" else "periodic").inc()
    before = {_interruption_key(e): e for e in old.get("interruptions") or []}
    for entry in new.get("interruptions") or []:
        ikey = _interruption_key(entry)
        prior = before.get(ikey)
        if prior is None:
            INTERRUPTIONS.labels(str(entry.get("source") or "unknown")).inc()
            state.detected[ikey] = now
            prior = {}
        seen = state.detected.get(ikey)  # in-process clock: sub-second; else the status stamps
        for stamp, histogram in (
            ("requestedAt", NOTICE_TO_REQUEST),
            ("committedAt", NOTICE_TO_COMMIT),
        ):
            if entry.get(stamp) and not prior.get(stamp):
                took = (
                    now - seen
                    if seen is not None
                    else _seconds_between(entry.get("detectedAt"), entry.get(stamp))
                )
                if took is not None:
                    histogram.observe(took)
        # 0 when the commit answered the request, then what the resumed rank 0 measured.
        lost = _int(entry.get("lostSteps")) - _int(prior.get("lostSteps"))
        if lost > 0:
            LOST_STEPS.inc(lost)
    live = {_interruption_key(e) for e in new.get("interruptions") or []}
    state.detected = {k: v for k, v in state.detected.items() if k in live}


def forget(namespace: str, name: str) -> None:
    """The job's daemon ended (job deleted, operator stopping): drop its series."""
    JOBS.jobs.pop((namespace, name), None)


@contextmanager
def reconcile_timer() -> Iterator[None]:
    """Time one reconcile pass; a pass that raises is also counted as an error."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - start)


def instrument_kopf_watches() -> bool:
    """Follow kopf's watch streams (list, then watch) to know when the operator is ready.

    kopf has no public hook for "the initial listing is done", so this wraps
    `kopf._cogs.clients.watching.continuous_watch`, which yields `Bookmark.LISTED` exactly then.
    Private API, pinned by the kopf version in pyproject; if it moves, readiness degrades to
    "ready once started" (reported by /readyz) instead of breaking the operator.
    """
    try:
        from kopf._cogs.clients import watching
    except ImportError:
        return False
    original = getattr(watching, "continuous_watch", None)
    listed = getattr(getattr(watching, "Bookmark", None), "LISTED", None)
    if original is None or listed is None:
        return False
    WATCHES.state.clear()  # a new operator run in this process starts with no streams
    if getattr(original, "_kubetrain_instrumented", False):
        WATCHES.instrumented = True
        return True

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
        key = (str(getattr(resource, "plural", resource)), str(namespace or ""))
        WATCHES.state[key] = "listing"
        try:
            async for event in original(**kwargs):
                if event is listed:
                    WATCHES.state[key] = "up"
                yield event
        finally:
            # kopf opens the stream again if it still wants it (then "listing" until listed); a
            # stream it dropped for good (a namespace gone, an operator run ended in this
            # process) must not hold readiness down.
            WATCHES.state.pop(key, None)
            WATCH_RESTARTS.labels(key[0]).inc()

    continuous_watch._kubetrain_instrumented = True  # type: ignore[attr-defined]
    watching.continuous_watch = continuous_watch
    original_block = getattr(watching, "streaming_block", None)
    if original_block is not None:

        @asynccontextmanager
        async def streaming_block(**kwargs: Any) -> AsyncIterator[Any]:
            if kwargs.get("operator_paused") is not None:
                WATCHES.paused = kwargs["operator_paused"]
            async with original_block(**kwargs) as waiter:
                yield waiter

        watching.streaming_block = streaming_block
    WATCHES.instrumented = True
    return True


class Server:
    """/metrics (Prometheus text format) and /readyz on one port, inside the operator's loop."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or "0.0.0.0", int(port)
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web  # kopf's own dependency

        async def metrics(_: web.Request) -> web.Response:
            body = await asyncio.to_thread(generate_latest, REGISTRY)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def readyz(_: web.Request) -> web.Response:
            ok, why = WATCHES.ready()
            return web.Response(status=200 if ok else 503, text=why + "\n")

        app = web.Application()
        app.add_routes([web.get("/metrics", metrics), web.get("/readyz", readyz)])
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
