"""kopf wiring only: indexes, wake-ups and one reconcile daemon per TrainingJob.

Every per-event handler is `async def`: kopf runs a plain `def` in a worker thread, a thread hop
per pod event, and asyncio.Event.set() is not thread-safe.

Why a daemon: it makes the job's own loop the single writer of its status and children, so pod,
node and job events never race each other. Events only *wake* the loop (an asyncio.Event). Pods
reach it through the operator's own pod watch (kubetrain.podwatch: kopf's per-event machinery
cost half the CPU at scale, issue 14) into an index keyed by (namespace, job), nodes through a
kopf index keyed by name: per-event work is O(1) and no handler ever lists the cluster.
Production (`python -m kubetrain`) and the tests (`KopfRunner([... "-m", "kubetrain.handlers"])`)
load this same module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import kopf

from kubetrain import heap, k8s, metrics, provision, surface
from kubetrain.api.constants import (
    GROUP,
    KUEUE_GROUP,
    KUEUE_VERSION,
    LABEL_JOB,
    LABEL_JOB_NAMESPACE,
    PLURAL,
    VERSION,
    WORKLOAD_PLURAL,
)
from kubetrain.config import ENV_METRICS_ADDRESS, ENV_NAMESPACES
from kubetrain.k8s import Kube, KubeError
from kubetrain.podwatch import PodWatch
from kubetrain.reconcile import queue_sync
from kubetrain.reconcile.gang import detect_gang_scheduling
from kubetrain.reconcile.loop import Claims, JobSource, reconcile_once, starting_soon
from kubetrain.reconcile.observe import NodeView, PodView, Usage, node_view
from kubetrain.reconcile.podindex import PodIndex

Key = tuple[str, str]
WORKER_PODS = {LABEL_JOB: kopf.PRESENT}
ERROR_BACKOFF_SECONDS = surface.BACKOFF_BASE_SECONDS
FSX_RETRY_SECONDS = 15.0
# Passes that may start an attempt at once: about what the connection pool (kubetrain.k8s.
# MAX_IN_FLIGHT) keeps busy with a dozen creates each.
MAX_STARTING = 32
# A job's passes start at most this often. The first wake after a quiet spell runs at once (a
# spot notice, a rank's failure, a new job); a burst of its pods' events (8 pods created, bound,
# started: ~40 events) waits out the rest of the spacing and is read in one pass. Unspaced, a
# gang of 8 took ~60 passes from submission to Running, most of the operator's CPU (issue 14).
PASS_SPACING_SECONDS = 0.1


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled configuration and no essence: the reconcile is level-based and reads the
    spec itself, and kopf has no create/update/field handlers here to diff for.

    kopf's annotation (the whole spec) would outgrow the 256 KiB annotation limit for a large
    spec, leaving the job undeletable; and kopf builds an essence (a deep copy of the body) twice
    per event of every watched object, pods included, only to find no difference (7% of the
    operator's CPU in a 100-job round, issue 14). An empty essence says the same: nothing changed.
    Deletion handlers still run (they key on deletionTimestamp, not on a diff)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def quiet_handler_success(record: logging.LogRecord) -> bool:
    """Drop kopf's "Handler 'wake_on_node' succeeded." (INFO, once per event: 4,400 of 5,270
    lines in a 100-job round when pods were watched through kopf, issue 14). kopf logs those
    through its local (never posted) object logger, which marks them k8s_skip; failures and our
    own lines stay."""
    return not (
        record.levelno == logging.INFO
        and getattr(record, "k8s_skip", False)
        and str(record.msg).startswith("Handler ")
        and str(record.msg).endswith(" succeeded.")
    )


class Wakeups:
    """(namespace, job) -> the asyncio.Event its daemon sleeps on."""

    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}

    def register(self, key: Key) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def forget(self, key: Key) -> None:
        self._events.pop(key, None)

    def wake(self, key: Key) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()


@kopf.on.login(id="login")
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """In-cluster token, else $KUBECONFIG read now: the same credentials as kubetrain.k8s's."""
    return k8s.login(settings)


@kopf.on.startup(id="configure")
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    # Our bookkeeping lives under our own prefix; status stays exactly what the CRD schema allows.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    # Events with reasons come from the reconcile itself; kopf posts only its own failures.
    settings.posting.level = logging.ERROR
    if quiet_handler_success not in logging.getLogger("kopf.objects").filters:
        logging.getLogger("kopf.objects").addFilter(quiet_handler_success)
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    # Before any watch starts (kopf starts them after the startup handlers): readiness needs them.
    metrics.instrument_kopf_watches()
    address = os.environ.get(ENV_METRICS_ADDRESS)
    if address:
        memo.metrics_server = metrics.Server(address)
        await memo.metrics_server.start()
        logger.info("serving /metrics and /readyz on %s", address)
    memo.kube = Kube(functools.partial(k8s.login, settings))
    metrics.API_REQUESTS.counts = memo.kube.requests
    memo.gang_scheduling, why = await detect_gang_scheduling(memo.kube)
    logger.info("gang scheduling: %s (%s)", memo.gang_scheduling.value, why)
    memo.wakeups = Wakeups()
    memo.sources = {}  # (namespace, job) -> its daemon's JobSource (what it last wrote or read)
    memo.nodes_seen = {}
    memo.claims = Claims()  # pods just created or pinned to a zone, until the watch shows them
    memo.starts = asyncio.Semaphore(MAX_STARTING)  # passes starting an attempt at once
    # Every worker pod, listed before kopf starts any daemon (startup handlers run first).
    namespaces = [ns for ns in os.environ.get(ENV_NAMESPACES, "").split(",") if ns]
    memo.pod_watch = PodWatch(
        memo.kube, PodIndex(), memo.wakeups.wake, namespaces, saw=memo.claims.saw
    )
    await memo.pod_watch.list()
    memo.pod_watch.start()
    logger.info("watching %d worker pods", len(memo.pod_watch.index))
    memo.heap_trim = asyncio.create_task(heap.keep_trimmed(), name="kubetrain heap trim")
    if not settings.peering.standalone and settings.peering.clusterwide:
        try:
            await memo.kube.ensure_cluster_peering(settings.peering.name)
        except KubeError as exc:  # the CRD is missing: kopf itself reports what to install
            logger.warning("cannot create ClusterKopfPeering %r: %s", settings.peering.name, exc)


@kopf.on.cleanup(id="shut_down")
async def shut_down(memo: kopf.Memo, **_: Any) -> None:
    pod_watch = getattr(memo, "pod_watch", None)
    if pod_watch is not None:
        await pod_watch.stop()
    heap_trim = getattr(memo, "heap_trim", None)
    if heap_trim is not None:
        heap_trim.cancel()
    server = getattr(memo, "metrics_server", None)
    if server is not None:
        await server.stop()
    kube = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()


@kopf.on.probe(id="watches")
def watches_probe(**_: Any) -> str:
    """Shown by the liveness endpoint (/healthz) for people; readiness is /readyz."""
    return metrics.WATCHES.ready()[1]


# Not optional: an optional deletion handler runs only while something else (the daemon) holds
# kopf's finalizer, and the daemon has returned already when ttlSecondsAfterFinished deletes the
# job, so the cluster-scoped volumes and classes would be left behind.
@kopf.on.delete(GROUP, VERSION, PLURAL, id="release_fsx_volume", retries=5, backoff=5)
async def release_fsx_volume(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """The static FSx PV and a provisioned volume's StorageClass are cluster-scoped, so owner
    references cannot collect them: we do (the provisioned claim goes with the job, and its
    volume with the claim: reclaim policy Delete)."""
    selector = f"{LABEL_JOB}={name},{LABEL_JOB_NAMESPACE}={namespace}"
    try:
        await memo.kube.delete_volumes(selector)
        await memo.kube.delete_storage_classes(selector)
    except KubeError as exc:
        if exc.status in (401, 403):  # RBAC will not change by retrying: do not hold the delete
            raise kopf.PermanentError(f"cannot delete the job's FSx volumes: {exc}") from exc
        raise kopf.TemporaryError(f"deleting the job's FSx volumes: {exc}", delay=5) from exc


@kopf.on.delete(GROUP, VERSION, PLURAL, id="release_workload", retries=5, backoff=5)
async def release_workload(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A queue-labelled job's Kueue Workload holds Kueue's finalizer until its job controller lets
    it go (kubetrain.reconcile.queue): the job is going, so is the Workload."""
    try:
        await queue_sync.release_deleted(memo.kube, body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"releasing the job's Kueue Workload: {exc}", delay=5) from exc


@kopf.index("v1", "nodes", id="nodes_by_name")
async def nodes_by_name(body: kopf.Body, **_: Any) -> dict[str, NodeView]:
    view = node_view(body)
    return {view.name: view}


@kopf.on.event("v1", "nodes", id="wake_on_node")
async def wake_on_node(body: kopf.Body, type: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """Wake the jobs with pods on a node whose readiness, schedulability or taints changed, and
    every job waiting for room."""
    view = node_view(body)
    seen: dict[str, NodeView] = memo.nodes_seen
    if type == "DELETED":
        seen.pop(view.name, None)
    elif seen.get(view.name) == view:
        return  # a heartbeat: nothing a job cares about
    else:
        seen[view.name] = view
    for key in memo.pod_watch.index.jobs_on(view.name):
        memo.wakeups.wake(key)
    memo.pod_watch.room_freed()  # a node joined, became Ready or schedulable, or lost a taint


@kopf.on.event(GROUP, VERSION, PLURAL, id="wake_on_job")
async def wake_on_job(
    name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Wake the job's daemon, unless the event is the echo of its own status write: the pass
    that wrote it already acted on exactly that job (a pass per write, 4 to 10 per gang's start,
    for nothing, issue 14)."""
    key = (namespace or "", name)
    source: JobSource | None = memo.sources.get(key)
    version = body.get("metadata", {}).get("resourceVersion")
    if source is not None and version is not None and source.known == str(version):
        return
    memo.wakeups.wake(key)


@kopf.on.event(
    KUEUE_GROUP, KUEUE_VERSION, WORKLOAD_PLURAL, id="wake_on_workload", labels=WORKER_PODS
)
async def wake_on_workload(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Kueue admitted, evicted or requeued a job's Workload (kubetrain.reconcile.queue). Where
    Kueue is not installed the resource does not exist and kopf watches nothing here."""
    memo.wakeups.wake((namespace or "", str(body.get("metadata", {}).get("labels", {})[LABEL_JOB])))


async def _back_off(
    wake: asyncio.Event, delay: float, body: kopf.Body, stopped: kopf.DaemonStopped
) -> None:
    """Sleep out a failed pass's backoff. Wake-ups do not cut it short (the failure's own status
    write and every pod event would turn the backoff into a busy loop); a new spec does."""
    generation = body.get("metadata", {}).get("generation")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while not stopped and (left := deadline - loop.time()) > 0:
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=left)
        if body.get("metadata", {}).get("generation") != generation:
            return


@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", cancellation_timeout=1.0)
async def reconcile(
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The job's single writer: reconcile, then sleep until woken or the next deadline.

    Failures are the surface module's: backoff, a ReconcileError condition, rate-limited Events,
    and Failed/InvalidSpec when the API server rejects what this spec builds (kubetrain.surface).
    """
    pods: PodIndex = memo.pod_watch.index
    nodes_by_name: kopf.Index[str, NodeView] = kwargs["nodes_by_name"]
    namespace = namespace or ""  # TrainingJob is namespaced; kopf's signature is generic
    key = (namespace, name)
    wake = memo.wakeups.register(key)
    errors = surface.ErrorTracker()
    source = memo.sources[key] = JobSource(body)

    def node_lookup(node: str) -> NodeView | None:
        views = list(nodes_by_name.get(node, []))
        return views[0] if views else None

    def all_nodes() -> list[NodeView]:
        return [view for name in list(nodes_by_name) for view in nodes_by_name.get(name, [])]

    def usage(nodes: Sequence[str], own: Sequence[PodView]) -> Usage:
        claims: Claims = memo.claims
        pending = [p for p in claims.pending() if (p.namespace, p.job) != key]
        return pods.usage.usage(nodes, exclude=own, extra=pending)

    try:
        await memo.pod_watch.cover(namespace)  # its pods in the index before the first pass
        # A new FSx volume first (once per job; the pods wait for their claim to bind anyway).
        while provision.wants_fsx(body) and not stopped:
            problem = await provision.ensure_fsx(memo.kube, body, logger)
            if problem is None:
                break
            logger.warning("%s", problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=FSX_RETRY_SECONDS)
            wake.clear()
        loop = asyncio.get_running_loop()
        while not stopped:
            wake.clear()
            started = loop.time()
            if surface.rejected_this_generation(body):
                # Building this spec was refused by the API server: wait for a new spec.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=surface.BACKOFF_MAX_SECONDS)
                continue
            # Starting an attempt builds and sends a whole gang: a bounded number at once (FIFO),
            # so that a thousand jobs submitted together do not each hold a gang of manifests
            # waiting for the connection pool, and the first submitted start first (issue 14).
            limit = memo.starts if starting_soon(source.live) else contextlib.nullcontext()
            try:
                async with limit:
                    with metrics.reconcile_timer():
                        delay = await reconcile_once(
                            memo.kube,
                            namespace,
                            name,
                            pods.pods(key),
                            node_lookup,
                            logger,
                            all_nodes=all_nodes,
                            usage=usage,
                            gang=memo.gang_scheduling,
                            source=source,
                            claims=memo.claims,
                        )
            except Exception as exc:  # API hiccups, conflicts, rejections, a builder bug
                if not isinstance(exc, KubeError):
                    logger.debug("reconcile traceback", exc_info=True)
                try:
                    delay = await surface.on_error(
                        memo.kube, namespace, name, exc, errors, logger, source.wrote
                    )
                except Exception as report_error:  # reporting must never kill the daemon
                    logger.warning("could not report the reconcile error: %s", report_error)
                    delay = surface.backoff(errors.failures)
            else:
                try:
                    await surface.on_success(
                        memo.kube, namespace, name, body, errors, logger, source.wrote
                    )
                except Exception as report_error:
                    logger.warning("could not update conditions: %s", report_error)
            pods.hold(key, source.waiting_for_room)
            if delay is None:
                return
            if errors.failures:
                await _back_off(wake, delay, body, stopped)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(delay, 0.05))
            if (early := started + PASS_SPACING_SECONDS - loop.time()) > 0:
                await asyncio.sleep(early)  # what else wakes it meanwhile comes in this pass
    finally:
        pods.hold(key, False)
        memo.wakeups.forget(key)
        memo.sources.pop(key, None)
        metrics.forget(namespace, name)
