"""Room for the gang (issue 11 level 1, issue 13's elastic size): the pure part of decide that
counts free nodes for an attempt, keeps its pods behind the `kubetrain.dev/gang` scheduling gate
until one zone has room for the whole gang, releases them (pinning the zone), gives a released
gang `gangBindTimeoutSeconds` to bind, shrinks an elastic gang that has waited long enough and
grows a short one back at a coordinated checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from kubetrain.api.constants import COND_READY, GangScheduling
from kubetrain.build import Placement
from kubetrain.reconcile import elastic, notice
from kubetrain.reconcile.draft import Draft
from kubetrain.reconcile.notice import Budget, Next, Verdict
from kubetrain.reconcile.observe import PodView
from kubetrain.reconcile.plan import (
    Observed,
    PlacementNeeds,
    Plan,
    PodDelete,
    PodPatch,
    Policy,
    Target,
)
from kubetrain.reconcile.zones import Admission, Room, admit, place, room
from kubetrain.status import (
    REASON_GANG_BIND_TIMEOUT,
    REASON_PENDING,
    REASON_RESIZED,
    REASON_WAITING_FOR_CAPACITY,
    Transition,
    get_condition,
    parse_time,
    rfc3339,
)

# A gated gang looks again this often even when no node or pod event wakes it.
GATE_POLL_SECONDS = 30.0


def avoid_nodes(draft: Draft, attempt: int) -> list[str]:
    """Nodes an interruption of `attempt` came from: the next attempt stays off them."""
    return sorted({r.node for r in draft.records if r.attempt == attempt and r.node})


def needs_of(target: Target, observed: Observed) -> PlacementNeeds | None:
    """What the gang needs from a node: the spec's placement, and where Kueue admitted the job,
    its flavors' node labels too (apply_flavor puts them on the pods), so room is counted only on
    the nodes the pods can go to."""
    needs = target.placement
    state = observed.queue
    if needs is None or state is None:
        return needs
    labels = {k: v for f in state.flavors for k, v in f.node_labels}
    if not labels:
        return needs
    selector = tuple(sorted({**dict(needs.node_selector), **labels}.items()))
    return dataclasses.replace(needs, node_selector=selector)


def free_room(
    draft: Draft, needs: PlacementNeeds | None, observed: Observed, previous_attempt: int
) -> Room:
    """Room for this job's pods now, per (capacity type, zone); {} when the operator does not
    place them or knows no node that fits."""
    if needs is None:
        return {}
    return room(
        observed.all_nodes,
        needs,
        avoid_nodes(draft, previous_attempt),
        observed.usage,
    )


def released(draft: Draft, target: Target, gate: Admission | None) -> float:
    """Record that the attempt's pods are the scheduler's now; seconds until the next deadline.

    On counted room every pod should bind at once, so a short bind deadline applies; room the
    operator could not count (a provisioner adds nodes) gets startupTimeoutSeconds only. With
    native PodGroups the scheduler still holds the pods until the whole group fits: releaseTime
    is set when it binds them (native_bound).
    """
    policy = target.policy
    native = target.gang is GangScheduling.NATIVE
    draft.status.release_time = None if native else draft.now_s
    draft.status.bind_deadline = None
    startup = float(policy.startup_timeout_seconds)
    if gate is None or not gate.counted:
        return startup
    bind = policy.gang_bind_timeout_seconds
    draft.status.bind_deadline = rfc3339(draft.now + dt.timedelta(seconds=bind))
    return min(startup, float(bind))


def release_why(
    gate: Admission | None,
    placement: Placement | None,
    free: Room,
    needs: PlacementNeeds | None,
    size: int,
) -> str:
    if gate is None or needs is None:
        return ""
    if gate.counted:
        where = f" in {placement.zone}" if placement and placement.zone else ""
        return f" (room for the whole gang{where})"
    if not gate.known:
        return " (no known node of that kind: the provisioner decides where)"
    if not gate.fits:
        return f" (the provisioner adds nodes; {elastic.describe(free, needs, size)})"
    return ""


def wait_for_capacity(draft: Draft, needs_words: str) -> None:
    """Ready=False WaitingForCapacity, with an Event whenever what it waits for changes."""
    message = (
        f"attempt {draft.attempt}: waiting for capacity: {needs_words}; the pods are gated and "
        "hold no node until one zone has room for the whole gang"
    )
    ready = get_condition(draft.conditions, COND_READY)
    if (
        ready is not None
        and ready.get("reason") == REASON_WAITING_FOR_CAPACITY
        and ready.get("message") != message
    ):
        draft.notes.append(Transition(COND_READY, "False", REASON_WAITING_FOR_CAPACITY, message))
    draft.cond(COND_READY, False, REASON_WAITING_FOR_CAPACITY, message)


def gated(
    draft: Draft,
    target: Target,
    observed: Observed,
    gang: Sequence[PodView],
    deletes: Sequence[PodDelete],
) -> Plan | Verdict:
    """Pods of the current attempt still carry the gang's gate: release them all when one zone
    has room for the whole gang (or room cannot be counted), else keep waiting, holding nothing.
    The startup timeout does not run meanwhile. An elastic gang waiting gated at full size after
    a restart resumes on fewer nodes once elastic.next_start allows it. In native gang mode the
    operator creates no gated pod; one left by a run in kubetrain mode is released at once.

    A Verdict is that restart on fewer nodes, due since this attempt began (shrinkAfterSeconds
    has already been waited out): the caller carries it out."""
    policy = target.policy
    needs = needs_of(target, observed)
    size = draft.job.size(policy.nodes)
    free = free_room(draft, needs, observed, draft.attempt - 1)
    gating = needs is not None and target.gang is GangScheduling.KUBETRAIN
    gate = admit(free, observed.all_nodes, needs, size) if gating and needs is not None else None
    draft.nodes(0, size)
    if needs is not None and gate is not None and not gate.release:
        shrink = shrink_when_due(draft, policy, needs, free, size)
        if shrink is not None:
            return shrink
        wait_for_capacity(draft, elastic.describe(free, needs, size))
        return draft.finish(deletes=deletes, requeue=GATE_POLL_SECONDS)
    placement = place(free, needs, size, draft.status.zone) if needs is not None else None
    patch = (
        target.release(draft.attempt, placement)
        if target.release is not None
        else {"spec": {"schedulingGates": None}}
    )
    patches = [PodPatch(p.name, patch) for p in gang if p.gated]
    if placement is not None and placement.zone:
        draft.status.zone = placement.zone
    requeue = released(draft, target, gate)
    draft.cond(
        COND_READY,
        False,
        REASON_PENDING,
        f"attempt {draft.attempt}: released its {size} gated pods to the scheduler"
        + release_why(gate, placement, free, needs, size),
    )
    return draft.finish(patches=patches, deletes=deletes, requeue=requeue)


def shrink_when_due(
    draft: Draft, policy: Policy, needs: PlacementNeeds, free: Room, size: int
) -> Verdict | None:
    """An elastic gang gated at full size after a restart: resume on fewer nodes when
    elastic.next_start would have, counting the wait from when this attempt was created."""
    due = parse_time(draft.status.attempt_start_time)
    if policy.min_nodes is None or size < policy.nodes or draft.attempt <= 1 or due is None:
        return None
    start = elastic.next_start(policy, needs, free, due, draft.now, draft.status.zone)
    if start.wait_until is not None:
        draft.wake_at = min(draft.wake_at or start.wait_until, start.wait_until)
        return None
    if start.size >= size:
        return None
    return Verdict(
        Next.RESTART, REASON_RESIZED, f"{start.why}; resuming on {start.size}", Budget.NONE
    )


def bind_timeout(draft: Draft, policy: Policy, gang: Sequence[PodView]) -> Verdict | None:
    """Released on counted room, the gang must be bound by the bind deadline: a workload the
    operator does not see may have taken a node. Then the attempt goes (no budget counted) and
    the next one waits, gated, for room again, instead of holding nodes until startup timeout.

    Only once the scheduler has said so: while no unbound pod has its Unschedulable verdict, the
    pods wait in the scheduler's queue (thousands released at once take it minutes), which is
    no sign of room taken; startupTimeoutSeconds still bounds the wait."""
    deadline = parse_time(draft.status.bind_deadline)
    if deadline is None:
        return None
    n = draft.job.size(policy.nodes)
    bound = sum(1 for p in gang if p.node)
    if bound >= n:
        draft.status.bind_deadline = None
        return None
    if draft.now < deadline:
        draft.wake_at = deadline if draft.wake_at is None else min(draft.wake_at, deadline)
        return None
    if not any(p.unschedulable for p in gang if not p.node):
        return None  # not judged yet: its verdict (a pod event) wakes the job
    return Verdict(
        Next.RESTART,
        REASON_GANG_BIND_TIMEOUT,
        f"only {bound}/{n} pods bound to nodes within gangBindTimeoutSeconds="
        f"{policy.gang_bind_timeout_seconds} of their release (something else took room the "
        "operator had counted); the next attempt is placed from a fresh count of free room, "
        "gated while no zone has room for the whole gang",
        Budget.NONE,
    )


def grow_back(draft: Draft, target: Target, observed: Observed, size: int) -> None:
    """A gang running short: once there is room for every node, checkpoint and restart bigger."""
    needs = target.placement
    free = {}
    if needs is not None:
        free = room(observed.all_nodes, needs, (), observed.usage)
    words = elastic.room_to_grow(target.policy, needs, free, size, draft.status.zone)
    if words is not None:
        notice.request_resize(draft, target.policy, words)
    else:
        draft.wake_at = min(
            draft.wake_at or draft.now + dt.timedelta(seconds=elastic.POLL_SECONDS),
            draft.now + dt.timedelta(seconds=elastic.POLL_SECONDS),
        )


def native_bound(draft: Draft, target: Target, gang: Sequence[PodView]) -> bool:
    """With native PodGroups, whether the scheduler has bound the gang (it binds all of it or
    none); records the moment as releaseTime, from which startupTimeoutSeconds counts. Until
    then the gang holds no node and a new attempt would queue the same way, so it gets no startup
    deadline. True in the operator's own gang mode (its gates decide when the clock starts)."""
    if target.gang is not GangScheduling.NATIVE:
        return True
    if not any(p.node for p in gang):
        draft.status.release_time = None
        return False
    draft.status.release_time = draft.status.release_time or draft.now_s
    return True
