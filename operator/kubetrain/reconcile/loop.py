"""One reconcile pass for one job: read once, decide in memory, act. Called by the job's daemon.

Pods and nodes come from kopf indexes (O(1) lookups, no listing). The job is never judged on a
stale copy (restart counters!): a pass reads kopf's live body only when it is exactly the version
this daemon last had from the API server (its own status write, or its last read), else it reads
the job from the API server (JobSource). So a pass woken by a pod event costs no job read. The one exception:
when a rank of the running attempt is missing from the index (and was not just created by this
operator: Claims vouches for those until the watch delivers them), the attempt's pods are read from
the API server, because only the API can tell a pod the watch has not delivered yet from one that
was deleted (every rank of an attempt is created before its status is written, so a rank the API
does not have was deleted, whenever that happened: also while the operator was down).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB, GangScheduling
from kubetrain.k8s import Kube
from kubetrain.reconcile import queue_sync
from kubetrain.reconcile.act import act
from kubetrain.reconcile.decide import decide, policy_requeue
from kubetrain.reconcile.observe import ZONE_LABEL, NodeView, PodView, Usage, pod_view
from kubetrain.reconcile.plan import Invalid, JobView, Observed, Plan, Target
from kubetrain.reconcile.target import to_target
from kubetrain.status import TERMINAL_PHASES, progress_only, waits_for_room

PodKey = tuple[str, str]  # (namespace, pod name)
JobKey = tuple[str, str]  # (namespace, job name)
# A progress-only status change (a count of ranks scheduled or running) waits this long after
# the last write; phase and condition changes never wait. At 1 s a gang starting still wrote its
# status 4 to 5 times, each write costing the API server about two pod creates (CEL rules,
# schema, a watch event per watcher) while other gangs were being created (issue 14).
PROGRESS_WRITE_SECONDS = 5.0


class Claims:
    """Pods this operator has just pinned to a zone (created pinned, or released from their gate)
    until its watch shows them so: the index lags the API, and another gang counting room in that
    window would count the same free nodes again (two gangs released into room for one).

    The watch settles each claim as it delivers the pod (`saw`), so what is pending is only the
    watch's lag, never every pod created lately (a scan of those was O(pods) per pass, issue 14).
    """

    TTL_SECONDS = 30.0  # the watch has delivered them long before

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pods: dict[PodKey, tuple[float, PodView]] = {}  # in claim order: expiry order
        # Pods created by this operator, by job, until the watch delivers them (any event).
        self._created: dict[JobKey, dict[str, tuple[float, PodView]]] = {}

    def add(self, views: Iterable[PodView]) -> None:
        expiry = self._clock() + self.TTL_SECONDS
        for view in views:
            key = (view.namespace, view.name)
            self._pods.pop(key, None)  # re-claimed: to the end, with its new expiry
            self._pods[key] = (expiry, view)

    def created(self, views: Iterable[PodView]) -> None:
        """Pods a pass has created (the API server has them): the job's next pass counts them
        as they were created until the watch delivers them (kubetrain.reconcile.loop.
        current_attempt_pods would otherwise read the attempt's pods from the API server)."""
        expiry = self._clock() + self.TTL_SECONDS
        for view in views:
            self._created.setdefault((view.namespace, view.job), {})[view.name] = (expiry, view)

    def unseen(self, namespace: str, job: str) -> list[PodView]:
        """The job's pods created by this operator that its watch has not delivered yet.
        After TTL_SECONDS a pod still not delivered is not vouched for (a relist after a 410
        loads the index without hearing of each pod): the API server is asked again."""
        pods = self._created.get((namespace, job))
        if not pods:
            return []
        now = self._clock()
        for name in [name for name, (expiry, _view) in pods.items() if expiry < now]:
            del pods[name]
        if not pods:
            del self._created[(namespace, job)]
        return [view for _expiry, view in pods.values()]

    def saw_all(self, views: Iterable[PodView]) -> None:
        """Vouch for none of `views` as created any more."""
        for view in views:
            pods = self._created.get((view.namespace, view.job))
            if pods is not None:
                pods.pop(view.name, None)

    def saw(self, view: PodView, gone: bool = False) -> None:
        """The watch delivered the pod: released (or gone), the index counts it from now on;
        created, the index has it (an ADDED and a DELETED before the next pass: it is gone)."""
        pods = self._created.get((view.namespace, view.job))
        if pods is not None and pods.pop(view.name, None) is not None and not pods:
            del self._created[(view.namespace, view.job)]
        if gone or not view.gated:
            self._pods.pop((view.namespace, view.name), None)

    def pending(self) -> list[PodView]:
        """Claimed pods the watch has not shown released yet."""
        now = self._clock()
        while self._pods:
            key, (expiry, _view) = next(iter(self._pods.items()))
            if expiry >= now:
                break
            del self._pods[key]
        return [view for _expiry, view in self._pods.values()]


def created_pods(plan: Plan) -> list[PodView]:
    """Views of the pods `plan` creates, as created."""
    pods = (obj for obj in plan.creates if obj.get("kind") == "Pod")
    return [view for view in map(pod_view, pods) if view is not None]


def claimed(plan: Plan, pods: Sequence[PodView]) -> list[PodView]:
    """The pods `plan` pins to a zone for the scheduler: created ungated with a zone, or released."""
    out = [v for v in created_pods(plan) if v.zone_pin and not v.gated]
    by_name = {p.name: p for p in pods}
    for patch in plan.patches:
        added = (patch.patch.get("spec") or {}).get("nodeSelector") or {}
        view = by_name.get(patch.name)
        if view is not None and (added.get(ZONE_LABEL) or view.zone_pin):
            selector = tuple(sorted({**dict(view.selector), **added}.items()))
            out.append(dataclasses.replace(view, gated=False, selector=selector))
    return out


def _version(job: Mapping[str, Any] | None) -> str | None:
    meta = (job or {}).get("metadata") or {}
    version = meta.get("resourceVersion")
    return str(version) if version else None


class JobSource:
    """The job for one daemon's passes: kopf's live view of it when that view is the version
    the API server last gave this daemon, else a fresh read.

    resourceVersions are opaque (never compared for order): equality with the version we last
    wrote or read proves the view holds everything we know, and anything else costs one GET.
    One exception: a job without any status, before this daemon wrote or read one, has nothing
    of ours to be stale about (a new job's first pass costs no GET; should an earlier daemon's
    first write be missing from the view, this pass recomputes that same first status).
    """

    def __init__(
        self, live: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.live = live
        self.known: str | None = None
        self.clock = clock
        self.wrote_at: float | None = None  # when this daemon last wrote the status
        # The last pass found no room for the gang (gated, or its attempt not yet created): room
        # coming free anywhere is worth a pass (kubetrain.reconcile.podindex.waiting_jobs).
        self.waiting_for_room = False
        self._target: tuple[tuple[str, Any, GangScheduling], Target | Invalid] | None = None

    def target(
        self, body: Mapping[str, Any], gang: GangScheduling = GangScheduling.KUBETRAIN
    ) -> Target | Invalid:
        """The spec parsed and resolved once per generation (the spec changes only with it)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("uid")), meta.get("generation"), gang)
        if key[1] is None or self._target is None or self._target[0] != key:
            self._target = (key, to_target(body, gang))
        return self._target[1]

    async def read(self, kube: Kube, namespace: str, name: str) -> Mapping[str, Any] | None:
        live = self.live
        if live is not None and (
            _version(live) == self.known
            if self.known is not None
            else _version(live) is not None and not live.get("status")
        ):
            return {key: live[key] for key in live}  # the raw event's parts, not a live view
        body = await kube.get_job(namespace, name)
        self.known = _version(body)
        return body

    def wrote(self, version: str | None) -> None:
        """Our own write's resourceVersion (None: no write): the version the watch brings next."""
        if version:
            self.known = version
            self.wrote_at = self.clock()

    def defer(self, plan: Plan, status: Mapping[str, Any]) -> float | None:
        """Seconds to hold back `plan`'s status write: when it is all the plan does, it only
        counts progress (kubetrain.status.progress_only), and the last write was less than
        PROGRESS_WRITE_SECONDS ago. None: write now. Phase and condition changes, and every
        write that comes with creates, deletes or requests, are never held back."""
        if not plan.status_changed or self.wrote_at is None:
            return None
        if plan.creates or plan.annotates or plan.patches or plan.deletes or plan.delete_job:
            return None
        left = self.wrote_at + PROGRESS_WRITE_SECONDS - self.clock()
        return left if left > 0 and progress_only(status, plan.status) else None


def starting_soon(job: Mapping[str, Any] | None) -> bool:
    """The job's next pass may start an attempt, as far as the watch's view of it shows: none
    started yet, or a restart due. A guess made before the pass reads the job: a wrong one only
    throttles a pass that starts nothing, or lets one start unthrottled (kubetrain.handlers)."""
    status = (job or {}).get("status") or {}
    return not status.get("attempt") or bool(status.get("restartAfter"))


async def current_attempt_pods(
    kube: Kube,
    job: JobView,
    target: Target,
    indexed: Sequence[PodView],
    unseen: Sequence[PodView] = (),
) -> tuple[list[PodView], frozenset[str]]:
    """(pods of the running attempt, names of its ranks that were deleted).

    The index's view, with the pods this operator created that the watch has not delivered yet
    (`unseen`: as created), when it has every rank; else the API server's, which says for certain
    which ranks are gone (at 100 gangs starting, the watch's lag behind the creates made half the
    passes list their pods, issue 14). Ranks are only known for a gang built from the current spec: after an edit
    (pods of another spec hash) the attempt may have had another size, and the spec change
    restarts the gang anyway.
    """
    attempt = job.attempt
    current = [p for p in indexed if p.attempt == attempt]
    have = {p.name for p in current}
    current += [p for p in unseen if p.attempt == attempt and p.name not in have]
    expected = {target.pod_name(attempt, rank) for rank in range(job.size(target.policy.nodes))}
    settled = job.status.get("phase") in TERMINAL_PHASES or target.policy.suspend
    if attempt <= 0 or job.status.get("restartAfter") or settled:
        return current, frozenset()
    if expected <= {p.name for p in current}:
        return current, frozenset()
    selector = f"{LABEL_JOB}={job.name},{LABEL_ATTEMPT}={attempt}"
    fresh = [v for v in map(pod_view, await kube.list_pods(job.namespace, selector)) if v]
    if any(p.spec_hash not in (None, target.spec_hash) for p in fresh):
        return fresh, frozenset()
    return fresh, frozenset(expected - {p.name for p in fresh})


async def reconcile_once(
    kube: Kube,
    namespace: str,
    name: str,
    pods: Iterable[PodView],
    node_lookup: Callable[[str], NodeView | None],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    now: dt.datetime | None = None,
    all_nodes: Callable[[], Sequence[NodeView]] = tuple,
    usage: Callable[[Sequence[str], Sequence[PodView]], Usage] = lambda _nodes, _own: Usage(),
    gang: GangScheduling = GangScheduling.KUBETRAIN,
    source: JobSource | None = None,
    claims: Claims | None = None,
) -> float | None:
    """Returns seconds until the next pass is due without events, or None when the job is gone.
    `gang`: the operator's gang scheduling mode (kubetrain.handlers.configure chose it).

    `all_nodes` and `usage` (what our pods hold on those nodes and wait for, from an index kept
    by pod events, less the job's own `pods`: O(nodes)) are called only when an attempt is about
    to start
    (choosing its zone from free capacity), while the current attempt's pods wait gated, or while
    an elastic gang runs short (looking for room to grow back), so the usual pass stays O(pods of
    the job). `claim` hears of the pods a pass pinned to a zone (Claims), before the watch
    delivers them.
    """
    source = source or JobSource()
    claims = claims or Claims()
    body = await source.read(kube, namespace, name)
    if body is None:
        return None
    job = JobView.from_body(body)
    target = source.target(body, gang)
    pod_list = [p for p in pods if p.namespace == namespace and p.job == name]
    own = pod_list  # as the index has them: what `usage` leaves out for this job
    vanished: frozenset[str] = frozenset()
    if isinstance(target, Target):
        unseen = claims.unseen(namespace, name)
        current, vanished = await current_attempt_pods(kube, job, target, pod_list, unseen)
        pod_list = [p for p in pod_list if p.attempt != job.attempt] + current
    nodes = {p.node: node_lookup(p.node) for p in pod_list if p.node}
    # Room is counted when an attempt is due, while the current one's pods wait gated, and each
    # pass of an elastic gang running short (it grows back when there is room).
    short = isinstance(target, Target) and job.size(target.policy.nodes) < target.policy.nodes
    due = job.attempt == 0 or bool(job.status.get("restartAfter"))
    starting = due or short or any(p.gated for p in pod_list if p.attempt == job.attempt)
    # The admitted flavors' node labels too: room is counted on their nodes (capacity.needs_of).
    queued = (
        await queue_sync.observe(kube, body, target, starting)
        if isinstance(target, Target)
        else None
    )
    candidates = tuple(all_nodes()) if starting else ()
    observed = Observed(
        pods=pod_list,
        nodes=nodes,
        vanished=vanished,
        all_nodes=candidates,
        usage=usage([n.name for n in candidates], own) if starting else Usage(),
        queue=queued,
    )
    plan = decide(job, target, observed, now or dt.datetime.now(dt.UTC))
    source.waiting_for_room = waits_for_room(plan.status)
    held = source.defer(plan, job.status)
    if held is not None:  # written by the pass this requeue brings, or an earlier one
        again = held if plan.requeue_after is None else min(held, plan.requeue_after)
        plan = dataclasses.replace(plan, status_changed=False, requeue_after=again)
    if plan.creates or plan.patches:
        # Before the first await: another job's pass counting room from now on sees these.
        claims.add(claimed(plan, pod_list))
    # Before the first await too: the watch may deliver a pod before act returns.
    made = created_pods(plan)
    claims.created(made)
    try:
        source.wrote(await act(kube, body, plan, logger))
    except BaseException:
        claims.saw_all(made)  # not vouched for: some creates may have failed
        raise
    if queued is not None:
        await queue_sync.settle(kube, body, queued, plan, pod_list, now)
    if plan.delete_job:
        return None
    return policy_requeue(plan)
