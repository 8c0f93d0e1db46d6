"""The operator's own watch of its worker pods: list, then watch from the listing's version,
into a PodIndex; each event wakes the job it concerns.

Not through kopf (issue 14): kopf runs its whole per-object machinery for every event of every
pod (a worker task per pod, handler selection, two indexes, logging contexts) and parses each
whole pod into dicts; that was half the operator's CPU in a 100-job round. Here one event is a
typed decode of only the fields PodView reads (msgspec skips the rest, managedFields included,
without building it), one PodView and one dict update.

The first listing completes in the startup handler, before kopf starts any job's daemon: a pass
never sees a half-filled index. The stream reconnects from its last resourceVersion after a drop,
and lists again after 410 Gone (pods deleted meanwhile are dropped from the index then).

Scope: the namespaces the operator serves when it knows them (`kubetrain-operator --namespace`),
else the whole cluster; where RBAC allows no cluster-wide list (kopf run with its own
`--namespace`), each namespace is listed and watched when its first job's daemon starts, before
that daemon's first pass (`cover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec

from kubetrain import metrics
from kubetrain.api.constants import LABEL_JOB
from kubetrain.k8s import Kube, KubeError
from kubetrain.reconcile.observe import PodView, pod_view
from kubetrain.reconcile.podindex import PodIndex

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # pods per list page: ~5 MB of JSON at most, decoded into views page by page
SERVER_TIMEOUT_SECONDS = 270  # the API server ends a watch after this; we reopen it at once
MAX_BACKOFF_SECONDS = 30.0
# Jobs waiting for room count it again at most this often. Room comes free at each of a starting
# gang's pods binding: 800 times while 100 gangs start, each waking every waiting job for a pass
# that counts room (issue 14: a storm of passes while 100 gangs started beside waiting ones).
ROOM_RECOUNT_SECONDS = 0.5

# --- the wire: only what PodView reads ----------------------------------------------------------


class _Meta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _Gate(msgspec.Struct, omit_defaults=True):
    name: str | None = None


class _Resources(msgspec.Struct, omit_defaults=True):
    requests: dict[str, Any] | None = None


class _Container(msgspec.Struct, omit_defaults=True):
    resources: _Resources | None = None


class _Toleration(msgspec.Struct, omit_defaults=True):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None


class _Spec(msgspec.Struct, omit_defaults=True):
    nodeName: str | None = None
    nodeSelector: dict[str, str] | None = None
    tolerations: list[_Toleration] | None = None
    schedulingGates: list[_Gate] | None = None
    containers: list[_Container] | None = None
    initContainers: list[_Container] | None = None


class _Condition(msgspec.Struct, omit_defaults=True):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None


class _Terminated(msgspec.Struct, omit_defaults=True):
    exitCode: int | None = None


class _State(msgspec.Struct, omit_defaults=True):
    terminated: _Terminated | None = None


class _ContainerStatus(msgspec.Struct, omit_defaults=True):
    state: _State | None = None


class _Status(msgspec.Struct, omit_defaults=True):
    phase: str | None = None
    reason: str | None = None
    conditions: list[_Condition] | None = None
    containerStatuses: list[_ContainerStatus] | None = None


class _Pod(msgspec.Struct, omit_defaults=True):
    metadata: _Meta | None = None
    spec: _Spec | None = None
    status: _Status | None = None


class _ListMeta(msgspec.Struct, omit_defaults=True):
    resourceVersion: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class _PodList(msgspec.Struct):
    metadata: _ListMeta
    items: list[_Pod] | None = None


class _Event(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _Failure(msgspec.Struct):
    """A watch's ERROR event carries a metav1.Status."""

    code: int = 0
    reason: str = ""
    message: str = ""


_LIST = msgspec.json.Decoder(_PodList)
_EVENT = msgspec.json.Decoder(_Event)
_POD = msgspec.json.Decoder(_Pod)
_FAILURE = msgspec.json.Decoder(_Failure)


def view_of(pod: _Pod) -> PodView | None:
    """The pod's PodView: the same function a whole pod body goes through (one definition)."""
    return pod_view(msgspec.to_builtins(pod))


def decode_pod(raw: bytes) -> PodView | None:
    """A pod's JSON (as the API server sends it) straight to its view."""
    return view_of(_POD.decode(raw))


def _backoff(failures: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 6)))


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class PodWatch:
    """Worker pods (those labelled LABEL_JOB) in `namespaces` (empty: the whole cluster, or each
    job's namespace where RBAC allows no cluster-wide list) into `index`; `wake(key)` for each
    job a change concerns, and `saw(view, gone)` for every pod event
    (kubetrain.reconcile.loop.Claims)."""

    def __init__(
        self,
        kube: Kube,
        index: PodIndex,
        wake: Callable[[tuple[str, str]], None],
        namespaces: Sequence[str] = (),
        *,
        saw: Callable[[PodView, bool], None] = lambda _view, _gone: None,
        server_timeout: int = SERVER_TIMEOUT_SECONDS,
        recount_seconds: float = ROOM_RECOUNT_SECONDS,
    ) -> None:
        self._kube = kube
        self._saw = saw
        self._server_timeout = server_timeout
        self.index = index
        self._wake = wake
        self._scopes = list(namespaces)
        self._versions: dict[str, str | None] = {}  # scope -> its listing's resourceVersion
        self._tasks: dict[str, asyncio.Task[None]] = {}  # scope -> its stream
        self._covering: dict[str, asyncio.Task[None]] = {}  # namespaces being listed on demand
        self._started = False
        self._recount: asyncio.TimerHandle | None = None  # the jobs waiting for room, woken soon
        self._recount_seconds = recount_seconds
        self._recounted_at = -recount_seconds

    @staticmethod
    def _path(namespace: str) -> str:
        return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"

    async def list(self) -> None:
        """The first listing of every scope: the index is complete when this returns. Waits out
        an API server that is not there yet, or RBAC that does not let it list (readiness says
        which scope is still listing)."""
        if not self._scopes:
            await self._list_until_done("", forbidden_ok=True)
            return
        for scope in self._scopes:
            await self._list_until_done(scope)

    async def _list_until_done(self, scope: str, *, forbidden_ok: bool = False) -> None:
        failures = 0
        while scope not in self._versions:
            try:
                self._versions[scope] = await self._list(scope)
            except Exception as exc:
                if forbidden_ok and isinstance(exc, KubeError) and exc.status == 403:
                    # Ready to follow each namespace as its first job appears (`cover`).
                    metrics.WATCHES.state[("pods", scope)] = "up"
                    log.info(
                        "cannot list pods cluster-wide (%s): each namespace is watched from "
                        "its first job on",
                        exc.message or exc.reason,
                    )
                    return
                failures += 1
                delay = _backoff(failures)
                where = f"in namespace {scope!r}" if scope else "cluster-wide"
                log.warning("cannot list pods %s (retrying in %.1fs): %s", where, delay, exc)
                await asyncio.sleep(delay)

    def start(self) -> None:
        self._started = True
        for scope in self._versions:
            self._follow_in_background(scope)

    def _follow_in_background(self, scope: str) -> None:
        if scope not in self._tasks:
            name = f"kubetrain pod watch {scope or '(cluster)'}"
            self._tasks[scope] = asyncio.create_task(self._follow(scope), name=name)

    async def cover(self, namespace: str) -> None:
        """Returns once the index holds `namespace`'s pods and follows them (a job's daemon
        calls it before its first pass): at once where they are watched already."""
        if "" in self._versions or namespace in self._versions:
            return
        covering = self._covering.get(namespace)
        if covering is None:
            covering = asyncio.create_task(self._cover(namespace))
            self._covering[namespace] = covering
        await asyncio.shield(covering)  # one daemon cancelled does not stop the others' listing

    async def _cover(self, namespace: str) -> None:
        try:
            await self._list_until_done(namespace)
            if self._started:
                self._follow_in_background(namespace)
        finally:
            self._covering.pop(namespace, None)

    async def stop(self) -> None:
        if self._recount is not None:
            self._recount.cancel()
            self._recount = None
        tasks = [*self._tasks.values(), *self._covering.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for scope in [*self._versions, ""]:
            metrics.WATCHES.state.pop(("pods", scope), None)

    async def _list(self, scope: str) -> str:
        metrics.WATCHES.state[("pods", scope)] = "listing"
        views: list[PodView] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("labelSelector", LABEL_JOB), ("limit", PAGE_SIZE)]
            if token:
                query.append(("continue", token))
            page = _LIST.decode(await self._kube.get_raw(self._path(scope), query))
            views.extend(v for v in map(view_of, page.items or ()) if v is not None)
            token = page.metadata.continue_
            if not token:
                break
        for key in self.index.replace(views, scope):
            self._wake(key)
        self.room_freed()  # pods may have gone while we were away: room to count again
        metrics.WATCHES.state[("pods", scope)] = "up"
        return page.metadata.resourceVersion

    async def _follow(self, scope: str) -> None:
        version = self._versions.get(scope)
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(scope)
                async for line in self._stream(scope, version):
                    version = self._on_line(line) or version
                    failures = 0
                # Ended: the server's timeout, or a connection dropped between two events (a
                # cut connection can read as a clean end). Reopen from where it was.
            except asyncio.CancelledError:
                raise
            except Gone:
                version = None
                log.info("pod watch: resourceVersion expired, listing again")
            except Exception as exc:  # the API server restarting, a dropped connection, a 5xx
                if isinstance(exc, KubeError) and exc.status == 410:
                    version = None
                failures += 1
                delay = _backoff(failures)
                log.warning("pod watch failed (retrying in %.1fs): %s", delay, exc)
                await asyncio.sleep(delay)
            metrics.WATCH_RESTARTS.labels("pods").inc()

    def _stream(self, scope: str, version: str) -> AsyncIterator[bytes]:
        return self._kube.watch_raw(
            self._path(scope),
            [
                ("labelSelector", LABEL_JOB),
                ("resourceVersion", version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", self._server_timeout),
            ],
            read_timeout=self._server_timeout + 30,
        )

    def _on_line(self, line: bytes) -> str | None:
        """One watch event; returns its resourceVersion."""
        event = _EVENT.decode(line)
        if event.type == "ERROR":
            failure = _FAILURE.decode(event.object)
            if failure.code == 410:
                raise Gone(failure.message)
            raise KubeError("WATCH", "pods", failure.code, failure.reason, failure.message)
        pod = _POD.decode(event.object)
        version = pod.metadata.resourceVersion if pod.metadata else None
        if event.type == "BOOKMARK":
            return version
        view = view_of(pod)
        if view is not None:
            self._saw(view, event.type == "DELETED")
            change = self.index.apply(event.type, view)
            if change.wake:
                self._wake((view.namespace, view.job))
            if change.freed:
                self.room_freed()
        return version

    def room_freed(self) -> None:
        """Room may have come free (a pod finished, went or bound; a node changed): the jobs
        waiting for room count it again, at once after a quiet spell, else once at the end of
        `recount_seconds` (ROOM_RECOUNT_SECONDS), whatever came free meanwhile."""
        if self._recount is not None:
            return  # already due
        loop = asyncio.get_running_loop()
        due = self._recounted_at + self._recount_seconds - loop.time()
        self._recount = loop.call_later(max(0.0, due), self._wake_waiting)

    def _wake_waiting(self) -> None:
        self._recount = None
        self._recounted_at = asyncio.get_running_loop().time()
        for key in self.index.waiting_jobs():
            self._wake(key)
