"""The pure heart of the operator: (job, spec, observed children, now) -> Plan.

Level-based: every call recomputes the whole status from what exists, so a missed event, a
restart of the operator or a retried write never leaves the job in a state it cannot leave.
The status carries the only memory between calls: `attempt`, `restartAfter` (attempt over and
already counted; next one pending) and the restart counters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from kubetrain.api.constants import (
    COND_ADMITTED,
    COND_FAILED,
    COND_READY,
    COND_SUCCEEDED,
    COND_SUSPENDED,
    REASON_INVALID_SPEC,
    GangScheduling,
)
from kubetrain.api.models import CheckpointStatus, ProgressStatus, SizeStatus
from kubetrain.build import gated
from kubetrain.reconcile import capacity, elastic, notice, queue
from kubetrain.reconcile import classify as cl
from kubetrain.reconcile import interrupt as itr
from kubetrain.reconcile.classify import Outcome, RankState
from kubetrain.reconcile.draft import RESYNC_SECONDS, Draft, seconds_until
from kubetrain.reconcile.notice import Budget, Next, Verdict
from kubetrain.reconcile.observe import PodView
from kubetrain.reconcile.plan import (
    Invalid,
    JobView,
    Observed,
    Plan,
    PodDelete,
    Policy,
    Target,
)
from kubetrain.reconcile.zones import admit
from kubetrain.status import (
    REASON_BACKOFF_LIMIT,
    REASON_EVICTED,
    REASON_FINISHED,
    REASON_HANG,
    REASON_INTERRUPTION_LIMIT,
    REASON_PENDING,
    REASON_QUEUED,
    REASON_RANK_FAILED,
    REASON_RESTARTING,
    REASON_RESUMED,
    REASON_RESUMED_FROM_CHECKPOINT,
    REASON_RUNNING,
    REASON_STARTING,
    REASON_STARTUP_TIMEOUT,
    REASON_SUCCEEDED,
    REASON_SUSPENDED,
    REASON_UNSCHEDULABLE,
    REASON_WAITING_FOR_CAPACITY,
    get_condition,
    is_true,
    parse_time,
    rfc3339,
)

MAX_BACKOFF_SECONDS = 600
STUCK_TERMINATING_SECONDS = 30  # past the pod's own deletion deadline -> force-delete
WAIT_POLL_SECONDS = 5.0  # while pods we deleted are still terminating


def _deletes(
    pods: Sequence[PodView], observed: Observed, now: dt.datetime, grace: int | None = None
) -> tuple[PodDelete, ...]:
    """Delete requests for pods still around; force only where the kubelet cannot finish.

    `grace`: shorter than the pods' own. A pod already being deleted (by a drain, or by us with
    its own grace) gets it too when its deadline is further away: the API server shortens a
    pending deletion, never lengthens one. Unbound pods first: the scheduler would otherwise bind
    them to the nodes the others free.
    """
    out = []
    for pod in sorted(pods, key=lambda p: p.node is not None):
        lost = cl.node_problem(pod, observed.nodes) is not None or (
            pod.node is None and pod.deleting
        )
        if lost:
            out.append(PodDelete(pod.name, pod.uid, force=True))
        elif not pod.deleting:
            out.append(PodDelete(pod.name, pod.uid, force=False, grace_seconds=grace))
        else:
            deadline = parse_time(pod.deletion_timestamp)
            left = (deadline - now).total_seconds() if deadline else 0.0
            if -left > STUCK_TERMINATING_SECONDS:
                out.append(PodDelete(pod.name, pod.uid, force=True))
            elif grace is not None and not pod.finished and left > grace + 1:
                out.append(PodDelete(pod.name, pod.uid, force=False, grace_seconds=grace))
    return tuple(out)


def _update_checkpoint(draft: Draft, pods: Sequence[PodView]) -> None:
    """status.checkpoint follows the newest commit reported by any rank 0 (periodic or emergency)."""
    current = draft.status.checkpoint
    step = current.step if current else 0
    best = None
    for pod in sorted(pods, key=lambda p: p.attempt):
        if pod.rank == 0 and pod.committed and pod.committed.step >= step:
            best, step = pod.committed, pod.committed.step
    if best and (current is None or best.id != current.id):
        draft.status.checkpoint = CheckpointStatus(
            id=best.id,
            step=best.step,
            uri=best.manifest,
            kind=best.kind,  # type: ignore[arg-type]
            committed_at=draft.now_s,
        )


def _copy_lost_steps(draft: Draft, pods: Sequence[PodView]) -> None:
    """The resumed rank 0 says how many steps the interrupted attempt lost: onto the timeline."""
    attempt = draft.attempt
    rank0 = next((p for p in pods if p.attempt == attempt and p.rank == 0), None)
    if rank0 is None or rank0.resumed is None:
        return
    itr.copy_lost_steps(draft.records, attempt, rank0.resumed)


def _terminal(draft: Draft, policy: Policy | None, observed: Observed) -> Plan:
    """Succeeded/Failed stay put; leftover live pods are released; TTL deletes the job."""
    live = [p for p in observed.pods if not p.finished]
    deletes = _deletes(live, observed, draft.now)
    draft.nodes(0, policy.nodes if policy else 0)
    ttl = policy.ttl_seconds_after_finished if policy else None
    done = parse_time(draft.status.completion_time)
    if ttl is None or done is None:
        return draft.finish(deletes=deletes, requeue=WAIT_POLL_SECONDS if live else None)
    expires = done + dt.timedelta(seconds=ttl)
    if draft.now >= expires:
        return draft.finish(deletes=deletes, delete_job=True, requeue=None)
    return draft.finish(deletes=deletes, requeue=seconds_until(expires, draft.now))


def _fail(draft: Draft, reason: str, message: str) -> None:
    draft.cond(COND_FAILED, True, reason, message)
    draft.cond(COND_READY, False, reason, message)
    draft.status.completion_time = draft.status.completion_time or draft.now_s
    draft.status.restart_after = None


def _invalid(draft: Draft, invalid: Invalid, observed: Observed) -> Plan:
    message = invalid.message
    if invalid.field and invalid.field not in message:
        message = f"{invalid.field}: {message}"
    _fail(draft, REASON_INVALID_SPEC, message)
    draft.status.message = message
    return _terminal(draft, None, observed)


def _backoff(policy: Policy, failures: int) -> int:
    """Exponential for user failures (the same bug tends to repeat); flat for infrastructure."""
    if failures <= 0:
        return min(policy.backoff_seconds, MAX_BACKOFF_SECONDS)
    return int(min(policy.backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))


def _restart(
    draft: Draft,
    policy: Policy,
    pods: Sequence[PodView],
    observed: Observed,
    verdict: Verdict,
    due: str | None = None,
) -> Plan:
    """Tear the gang down as one and count the cause against the right budget."""
    restarts = draft.status.restarts
    attempt = draft.attempt
    # Finished pods of the torn-down attempt go too: their capacity is free already, but a clean
    # slate is what `kubectl get pods` should show for the next attempt.
    deletes = _deletes(pods, observed, draft.now, notice.TEARDOWN_GRACE_SECONDS)
    notice.abandon_request(draft)
    if verdict.budget is Budget.NONE:
        delay, budget = 0, "not counted against a budget"
    elif verdict.budget is Budget.INTERRUPTIONS:
        if restarts.interruptions >= policy.max_interruptions:
            _fail(
                draft,
                REASON_INTERRUPTION_LIMIT,
                f"attempt {attempt} interrupted ({verdict.cause}) and maxInterruptions="
                f"{policy.max_interruptions} restarts are used up; raise "
                "spec.failurePolicy.maxInterruptions to keep retrying",
            )
            return _terminal(draft, policy, Observed(pods, observed.nodes))
        restarts.interruptions += 1
        delay = _backoff(policy, 0)
        budget = f"interruption {restarts.interruptions} of {policy.max_interruptions}"
    else:
        if restarts.failures >= policy.max_restarts:
            _fail(
                draft,
                REASON_BACKOFF_LIMIT,
                f"attempt {attempt}: {verdict.cause}; maxRestarts={policy.max_restarts} restarts "
                "are used up (raise spec.failurePolicy.maxRestarts or fix the failure)",
            )
            return _terminal(draft, policy, Observed(pods, observed.nodes))
        restarts.failures += 1
        delay = _backoff(policy, restarts.failures)
        budget = f"restart {restarts.failures} of {policy.max_restarts}"
    # `due`: when the next attempt became due, if earlier (a gated gang that shrinks has waited).
    draft.status.restart_after = due or rfc3339(draft.now + dt.timedelta(seconds=delay))
    then = f" and starting attempt {attempt + 1} in {delay}s"
    if verdict.reason == REASON_EVICTED:  # a stop: the next attempt waits for admission/resume
        then = f"; attempt {attempt + 1} starts when the job may run again"
    draft.cond(
        COND_READY,
        False,
        verdict.reason,
        f"attempt {attempt}: {verdict.cause}; deleting every pod of the attempt{then} ({budget})",
    )
    draft.nodes(0, policy.nodes)
    return draft.finish(deletes=deletes, requeue=WAIT_POLL_SECONDS)


def _rank_failed(states: Sequence[RankState]) -> Verdict | None:
    failed = cl.first(states, Outcome.FAILED)
    if failed is None:
        return None
    return Verdict(
        Next.RESTART, REASON_RANK_FAILED, f"rank {failed.rank} {failed.detail}", Budget.FAILURES
    )


def _hung(draft: Draft, policy: Policy, rank0: PodView | None) -> Verdict | None:
    """No new step from rank 0 within progressTimeoutSeconds (the first step of an attempt gets
    firstProgressTimeoutSeconds from the moment every rank runs). A job that never reported
    progress is never judged; otherwise the daemon looks again at the deadline."""
    progress = rank0.progress if rank0 else None
    if progress is not None:
        draft.status.progress = ProgressStatus(
            step=progress.step, time=rfc3339(progress.time), attempt=draft.attempt
        )
    timeout = policy.progress_timeout_seconds
    if timeout is None or draft.status.progress is None:
        return None
    if progress is not None:
        last, deadline = progress, progress.time + dt.timedelta(seconds=timeout)
    else:  # a new attempt that has not stepped yet
        ready = get_condition(draft.conditions, COND_READY)
        since = parse_time(ready.get("lastTransitionTime")) if ready else None
        if since is None:
            return None
        last, deadline = None, since + dt.timedelta(seconds=policy.first_progress_timeout_seconds)
    if draft.now < deadline:
        draft.wake_at = deadline if draft.wake_at is None else min(draft.wake_at, deadline)
        return None
    if last is None:
        cause = (
            f"no training step within firstProgressTimeoutSeconds="
            f"{policy.first_progress_timeout_seconds} of every rank running"
        )
    else:
        cause = (
            f"no training step since step {last.step} at {rfc3339(last.time)} "
            f"(progressTimeoutSeconds={timeout}): the gang looks hung"
        )
    return Verdict(Next.RESTART, REASON_HANG, cause, Budget.FAILURES)


def _start_next(
    draft: Draft,
    target: Target,
    observed: Observed,
    old_pods: Sequence[PodView],
    flavors: Sequence[queue.Flavor] = (),
) -> Plan:
    """Wait for the previous attempt to be gone and the backoff to pass, then create the next.

    Pods of the next attempt that are already there were created by a pass whose status write
    was lost (a crash); they are kept only if built from the same spec, so a gang never mixes
    two specs.
    """
    policy = target.policy
    attempt = draft.attempt
    nxt = attempt + 1
    stale = [
        p for p in observed.pods if p.attempt == nxt and p.spec_hash not in (None, target.spec_hash)
    ]
    if old_pods or stale:
        grace = notice.TEARDOWN_GRACE_SECONDS  # the restart is decided: see notice
        return draft.finish(
            deletes=_deletes([*old_pods, *stale], observed, draft.now, grace),
            requeue=WAIT_POLL_SECONDS,
        )
    restart_after = parse_time(draft.status.restart_after)
    if restart_after is not None and draft.now < restart_after:
        return draft.finish(requeue=seconds_until(restart_after, draft.now))
    checkpoint = draft.status.checkpoint
    resume = checkpoint.uri if checkpoint and checkpoint.uri else None
    needs = capacity.needs_of(target, observed)
    free = capacity.free_room(draft, needs, observed, attempt)
    due = restart_after if attempt > 0 else None
    start = elastic.next_start(policy, needs, free, due, draft.now, draft.status.zone)
    if start.wait_until is not None:
        draft.cond(COND_READY, False, REASON_WAITING_FOR_CAPACITY, f"attempt {nxt}: {start.why}")
        draft.nodes(0, policy.nodes)
        wait = min(elastic.POLL_SECONDS, seconds_until(start.wait_until, draft.now))
        return draft.finish(requeue=wait)
    placement, size = start.placement, start.size
    fewer = size if size != policy.nodes else None
    # Kueue admitted the quota (level 2), not the nodes: the gate still waits for room, counted
    # on its flavors' nodes (_needs). Native PodGroups (level 3): the scheduler gangs, no gate.
    gating = needs is not None and target.gang is GangScheduling.KUBETRAIN
    gate = admit(free, observed.all_nodes, needs, size) if gating and needs is not None else None
    if gate is None or gate.release:
        creates = queue.apply_flavor(target.build(nxt, resume, placement, fewer), flavors)
    else:  # no room for the whole gang: its pods wait gated, holding no node
        placement = None
        creates = gated(queue.apply_flavor(target.build(nxt, resume, None, fewer), flavors))
    if policy.min_nodes is not None or size != policy.nodes:
        why = start.why if size != policy.nodes else None
        draft.status.size = SizeStatus(current=size, desired=policy.nodes, reason=why)
    else:
        draft.status.size = None
    if placement is not None and placement.zone:
        draft.status.zone = placement.zone
    resumed = [
        r
        for r in draft.records
        if r.attempt == attempt and not r.resumed_at and itr.level_of(r) != itr.YELLOW
    ]
    for record in resumed:
        record.resumed_at = draft.now_s
        if not record.committed_at and checkpoint is not None:
            record.checkpoint_step = checkpoint.step  # what the gang resumes from
    if resumed:
        where = (
            f"from the checkpoint at step {checkpoint.step} ({resume})"
            if checkpoint and resume
            else "from scratch (no checkpoint was committed)"
        )
        away = sorted({r.node for r in resumed if r.node})
        draft.note(
            REASON_RESUMED_FROM_CHECKPOINT,
            f"attempt {nxt} resumes {where}"
            + (f", away from {', '.join(away)}" if away else "")
            + (f", in zone {placement.zone}" if placement and placement.zone else ""),
        )
    draft.status.attempt = nxt
    draft.status.attempt_start_time = draft.now_s
    draft.status.start_time = draft.status.start_time or draft.now_s
    if resume:
        draft.status.resume_manifest = resume
    draft.status.restart_after = None
    draft.nodes(0, size)
    if needs is not None and gate is not None and not gate.release:
        draft.status.release_time = draft.status.bind_deadline = None
        capacity.wait_for_capacity(draft, elastic.describe(free, needs, size))
        return draft.finish(creates=creates, requeue=capacity.GATE_POLL_SECONDS)
    requeue = capacity.released(draft, target, gate)
    draft.cond(
        COND_READY,
        False,
        REASON_PENDING,
        f"attempt {nxt}: created {size} pods"
        + (f" ({start.why})" if size != policy.nodes else "")
        + "; waiting for all of them to be scheduled"
        + capacity.release_why(gate, placement, free, needs, size),
    )
    return draft.finish(creates=creates, requeue=requeue)


def _native_waiting(
    draft: Draft, states: Sequence[RankState], deletes: Sequence[PodDelete]
) -> Plan:
    """Native PodGroups: the scheduler has bound no pod of the gang yet; it waits holding nothing,
    with no startup deadline (capacity.native_bound)."""
    n = len(states)
    unschedulable = [s for s in states if s.pod and s.pod.unschedulable]
    if unschedulable:
        reason = REASON_UNSCHEDULABLE
        message = (
            f"attempt {draft.attempt}: {len(unschedulable)}/{n} pods cannot be scheduled yet "
            f"({unschedulable[0].detail}); the scheduler binds the gang's PodGroup when all of it "
            "fits, holding no node meanwhile (startupTimeoutSeconds counts from then)"
        )
    else:
        reason = REASON_PENDING
        message = f"attempt {draft.attempt}: waiting for the scheduler to bind the gang's PodGroup"
    draft.cond(COND_READY, False, reason, message)
    return draft.finish(deletes=deletes, requeue=capacity.GATE_POLL_SECONDS)


def _suspend(draft: Draft, policy: Policy, observed: Observed) -> Plan:
    draft.cond(COND_SUSPENDED, True, REASON_SUSPENDED, "spec.suspend is true: pods released")
    draft.cond(COND_READY, False, REASON_SUSPENDED, "suspended")
    draft.status.restart_after = None
    draft.nodes(0, policy.nodes)
    return draft.finish(
        deletes=_deletes(observed.pods, observed, draft.now),
        requeue=WAIT_POLL_SECONDS if observed.pods else None,
    )


def _queued(draft: Draft, policy: Policy, observed: Observed, state: queue.QueueState) -> Plan:
    """Kueue has not admitted the job (or took the admission back): no pod runs meanwhile."""
    draft.cond(COND_READY, False, REASON_QUEUED, queue.waiting_message(state))
    draft.nodes(0, policy.nodes)
    deletes = _deletes(observed.pods, observed, draft.now, notice.TEARDOWN_GRACE_SECONDS)
    return draft.finish(deletes=deletes, requeue=WAIT_POLL_SECONDS if observed.pods else None)


def _observe_attempt(
    draft: Draft, target: Target, observed: Observed, pods: Sequence[PodView]
) -> Plan:
    """The current attempt exists: judge it, report readiness.

    Every rank was created before the attempt's status was written, so a rank that is not there
    was deleted (loop.current_attempt_pods asks the API server): the whole gang restarts.
    """
    policy = target.policy
    attempt = draft.attempt
    by_rank = {p.rank: p for p in pods}
    if 0 in by_rank:
        draft.progress, draft.resumed = by_rank[0].progress, by_rank[0].resumed
    n = draft.job.size(policy.nodes)
    states = [
        cl.classify_rank(
            r, by_rank.get(r), observed.nodes, observed.vanished, target.pod_name(attempt, r)
        )
        for r in range(n)
    ]
    strays = [p for p in pods if not 0 <= p.rank < n]
    need = range(n) if policy.success_ranks is None else policy.success_ranks
    if all(states[r].outcome is Outcome.SUCCEEDED for r in need if r < n):
        which = f"all {n} ranks" if len(need) == n else f"rank(s) {', '.join(map(str, need))}"
        message = f"attempt {attempt}: {which} succeeded"
        notice.close_on_success(draft)
        draft.cond(COND_SUCCEEDED, True, REASON_SUCCEEDED, message)
        draft.cond(COND_READY, False, REASON_FINISHED, message)
        draft.status.completion_time = draft.status.completion_time or draft.now_s
        return _terminal(draft, policy, observed)
    gang = [p for p in pods if 0 <= p.rank < n]
    if n < policy.nodes and cl.count(states, Outcome.RUNNING) == n:
        capacity.grow_back(draft, target, observed, n)
    verdict = notice.assess(draft, policy, target.spec_hash, states, gang, observed)
    if verdict.next is Next.RESTART:
        return _restart(draft, policy, pods, observed, verdict)
    if verdict.next is Next.WAIT:
        up = cl.count(states, Outcome.RUNNING, Outcome.SUCCEEDED)
        draft.nodes(up, n)
        return draft.finish(deletes=_deletes(strays, observed, draft.now))
    failed = _rank_failed(states)
    if failed is not None:
        return _restart(draft, policy, pods, observed, failed)
    if any(p.gated for p in gang):
        gated = capacity.gated(draft, target, observed, gang, _deletes(strays, observed, draft.now))
        if isinstance(gated, Verdict):
            return _restart(draft, policy, pods, observed, gated, draft.status.attempt_start_time)
        return gated
    unbound = capacity.bind_timeout(draft, policy, gang)
    if unbound is not None:
        return _restart(draft, policy, pods, observed, unbound)

    running = cl.count(states, Outcome.RUNNING, Outcome.SUCCEEDED)
    draft.nodes(running, n)
    rank0 = by_rank.get(0)
    zone_node = observed.nodes.get(rank0.node) if rank0 and rank0.node else None
    if zone_node and zone_node.zone:
        draft.status.zone = zone_node.zone
    deletes = _deletes(strays, observed, draft.now)
    if running == n:
        draft.cond(COND_READY, True, REASON_RUNNING, f"attempt {attempt}: {n}/{n} ranks running")
        hung = _hung(draft, policy, rank0)
        if hung is not None:
            return _restart(draft, policy, pods, observed, hung)
        return draft.finish(deletes=deletes)

    if not capacity.native_bound(draft, target, gang):
        return _native_waiting(draft, states, deletes)
    # Counted from the release of the gates: a gated gang holds no node.
    started = (
        parse_time(draft.status.release_time)
        or parse_time(draft.status.attempt_start_time)
        or draft.now
    )
    deadline = started + dt.timedelta(seconds=policy.startup_timeout_seconds)
    waiting = [s for s in states if s.outcome in (Outcome.PENDING, Outcome.MISSING)]
    if draft.now >= deadline and not is_true(draft.conditions, COND_READY):
        delay = _backoff(policy, 0)
        why = f"; {waiting[0].detail}" if waiting else ""
        draft.status.restart_after = rfc3339(draft.now + dt.timedelta(seconds=delay))
        draft.cond(
            COND_READY,
            False,
            REASON_STARTUP_TIMEOUT,
            f"attempt {attempt}: only {running}/{n} ranks running after startupTimeoutSeconds="
            f"{policy.startup_timeout_seconds}{why}; released all pods, retrying as attempt "
            f"{attempt + 1} in {delay}s",
        )
        draft.nodes(0, n)
        teardown = _deletes(pods, observed, draft.now, notice.TEARDOWN_GRACE_SECONDS)
        return draft.finish(deletes=teardown, requeue=float(delay))

    unschedulable = [
        s for s in states if s.outcome is Outcome.PENDING and s.pod and s.pod.unschedulable
    ]
    if unschedulable:
        reason = REASON_UNSCHEDULABLE
        message = (
            f"attempt {attempt}: {len(unschedulable)}/{n} pods cannot be scheduled yet "
            f"({unschedulable[0].detail}); the gang waits until startupTimeoutSeconds="
            f"{policy.startup_timeout_seconds}, then releases its pods and retries"
        )
    elif waiting:
        reason = REASON_PENDING
        message = f"attempt {attempt}: {n - len(waiting)}/{n} pods scheduled"
    else:
        reason = REASON_STARTING
        message = f"attempt {attempt}: {running}/{n} ranks running"
    ready = get_condition(draft.conditions, COND_READY)
    if not (ready and ready.get("status") == "True"):
        draft.cond(COND_READY, False, reason, message)
    return draft.finish(deletes=deletes, requeue=max(1.0, seconds_until(deadline, draft.now)))


def decide(job: JobView, target: Target | Invalid, observed: Observed, now: dt.datetime) -> Plan:
    """Compute the next status and the actions that converge the children toward it."""
    draft = Draft(job, now)
    if job.deleting:
        return Plan(status=dict(job.status), requeue_after=None)
    conditions = draft.conditions
    failed = get_condition(conditions, COND_FAILED)
    if isinstance(target, Invalid):
        return _invalid(draft, target, observed)
    if failed and failed.get("status") == "True" and failed.get("reason") == REASON_INVALID_SPEC:
        # The user fixed the spec: start over from a clean slate for this generation.
        draft.cond(COND_FAILED, False, REASON_RESUMED, "spec is valid again")
        draft.status.completion_time = draft.status.message = None
    elif is_true(conditions, COND_FAILED) or is_true(conditions, COND_SUCCEEDED):
        return _terminal(draft, target.policy, observed)

    policy = target.policy
    _update_checkpoint(draft, observed.pods)
    _copy_lost_steps(draft, observed.pods)
    attempt = draft.attempt
    state = observed.queue
    if state is not None:
        draft.cond(COND_ADMITTED, *queue.admission(state))
    # A running gang asked to stop (spec.suspend, a Kueue eviction) checkpoints first, like at a
    # spot notice (notice.assess); its pods are released once the request is settled.
    gang_running = (
        attempt > 0
        and not draft.status.restart_after
        and any(p.attempt == attempt and p.phase == "Running" for p in observed.pods)
    )
    if policy.suspend and not gang_running:
        return _suspend(draft, policy, observed)
    if is_true(conditions, COND_SUSPENDED):
        draft.cond(COND_SUSPENDED, False, REASON_RESUMED, "spec.suspend is false: resuming")
        if attempt > 0:
            draft.status.restart_after = draft.now_s
            draft.cond(COND_READY, False, REASON_RESTARTING, "resuming as a new attempt")

    if attempt == 0 or draft.status.restart_after:
        if state is not None and not state.runs:
            return _queued(draft, policy, observed, state)
        old = [p for p in observed.pods if p.attempt <= attempt]
        return _start_next(draft, target, observed, old, state.flavors if state else ())

    current = [p for p in observed.pods if p.attempt == attempt]
    others = [p for p in observed.pods if p.attempt != attempt]
    plan = _observe_attempt(draft, target, observed, current)
    if others and not plan.delete_job:
        grace = notice.TEARDOWN_GRACE_SECONDS
        extra = _deletes(others, observed, now, grace)
        plan = dataclasses.replace(plan, deletes=plan.deletes + extra)
    return plan


def policy_requeue(plan: Plan, default: float = RESYNC_SECONDS) -> float:
    """Seconds until the loop should look again even without events."""
    return default if plan.requeue_after is None else min(plan.requeue_after, default)


__all__ = ["decide", "policy_requeue"]
