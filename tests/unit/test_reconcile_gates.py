"""Gang admission without a scheduler plugin (issue 11, level 1): an attempt's pods wait behind a
scheduling gate until one zone has room for the whole gang, and a released gang that does not
bind in time is gated again instead of holding nodes until startupTimeoutSeconds."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from test_reconcile_decide import NS, Builder, job, name, pod, target
from test_reconcile_queue import ADMITTED, PENDING, SPOT
from test_reconcile_zones import P5_POD, REF, SPEC, node_with_room, worker_on

from kubetrain.api.constants import LABEL_KARPENTER_NODEPOOL, SCHEDULING_GATE_GANG, GangScheduling
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import Placement, build_attempt, build_pod, gated, release_patch, resolve
from kubetrain.reconcile import queue
from kubetrain.reconcile.capacity import GATE_POLL_SECONDS
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.elastic import describe
from kubetrain.reconcile.loop import Claims, claimed
from kubetrain.reconcile.observe import NodeView, PodView, Usage, node_view, pod_view
from kubetrain.reconcile.plan import Observed, PlacementNeeds, Plan, PodPatch, Target
from kubetrain.reconcile.target import to_target
from kubetrain.reconcile.zones import admit, room
from kubetrain.status import get_condition, rfc3339, waits_for_room

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
NEEDS = PlacementNeeds("p5.48xlarge", ("spot",), per_pod=P5_POD)
GATE = [{"name": SCHEDULING_GATE_GANG}]


def at(seconds: float) -> str:
    return rfc3339(NOW + dt.timedelta(seconds=seconds))


def zone_nodes(a: int, b: int, cap: str = "spot") -> list[NodeView]:
    return [node_with_room(f"a{i}", "us-west-2a", cap) for i in range(a)] + [
        node_with_room(f"b{i}", "us-west-2b", cap) for i in range(b)
    ]


# --- counting room ---------------------------------------------------------------------------------


def test_room_counts_what_is_bound_and_what_other_gangs_were_released_into() -> None:
    assert room(zone_nodes(3, 1), NEEDS) == {("spot", "us-west-2a"): 3, ("spot", "us-west-2b"): 1}
    assert describe(room(zone_nodes(3, 1), NEEDS), NEEDS, 4) == (
        "needs 4 x p5.48xlarge (spot) in one zone; 3 free in us-west-2a, 1 free in us-west-2b"
    )
    busy = worker_on("a0")
    pinned = dataclasses.replace(
        worker_on("x"),
        node=None,
        phase="Pending",
        selector=(("topology.kubernetes.io/zone", "us-west-2a"),),
        name="other-x",
    )
    free = room(zone_nodes(4, 1), NEEDS, (), Usage.of([busy, pinned]))
    assert free[("spot", "us-west-2a")] == 2
    # ... but gated pods of another gang hold nothing, wherever they are pinned.
    free = room(zone_nodes(4, 1), NEEDS, (), Usage.of([dataclasses.replace(pinned, gated=True)]))
    assert free[("spot", "us-west-2a")] == 4
    gate = admit(free, zone_nodes(4, 1), NEEDS, 4)
    assert gate.release and gate.counted


@pytest.mark.parametrize(
    ("nodes", "needs", "fits", "known", "provisioned", "release"),
    [
        (zone_nodes(4, 0), NEEDS, True, True, False, True),
        (zone_nodes(2, 2), NEEDS, False, True, False, False),
        # Nodes of the wrong kind are not room; none of the right kind: the provisioner decides.
        (zone_nodes(4, 4, cap="on-demand"), NEEDS, False, False, False, True),
        ([], NEEDS, False, False, False, True),
        # The pods' own nodeSelector must match (a NodePool only this job selects).
        (
            zone_nodes(4, 0),
            dataclasses.replace(NEEDS, node_selector=(("pool", "x"),)),
            False,
            False,
            False,
            True,
        ),
        # Karpenter's nodes: short of room, the gang is released for Karpenter to add nodes.
        (
            [
                dataclasses.replace(n, labels=((LABEL_KARPENTER_NODEPOOL, "p"),))
                for n in zone_nodes(2, 0)
            ],
            NEEDS,
            False,
            True,
            True,
            True,
        ),
        # ... unless the operator is told no label marks provisioned nodes.
        (
            [
                dataclasses.replace(n, labels=((LABEL_KARPENTER_NODEPOOL, "p"),))
                for n in zone_nodes(2, 0)
            ],
            dataclasses.replace(NEEDS, provisioner_labels=()),
            False,
            True,
            False,
            False,
        ),
        # The user's zone: only its room counts.
        (
            zone_nodes(4, 2),
            dataclasses.replace(NEEDS, zone="us-west-2b"),
            False,
            True,
            False,
            False,
        ),
        (zone_nodes(1, 4), dataclasses.replace(NEEDS, zone="us-west-2b"), True, True, False, True),
    ],
)
def test_when_a_gang_is_released(
    nodes: list[NodeView],
    needs: PlacementNeeds,
    fits: bool,
    known: bool,
    provisioned: bool,
    release: bool,
) -> None:
    gate = admit(room(nodes, needs), nodes, needs, 4)
    assert (gate.fits, gate.known, gate.provisioned, gate.release) == (
        fits,
        known,
        provisioned,
        release,
    )


def test_not_ready_and_tainted_nodes_are_known_but_not_free() -> None:
    nodes = zone_nodes(4, 0)
    nodes[0] = dataclasses.replace(nodes[0], ready=False)
    nodes[1] = dataclasses.replace(nodes[1], interruption_taints=("karpenter.sh/disrupted",))
    free = room(nodes, NEEDS)
    assert free == {("spot", "us-west-2a"): 2} and not admit(free, nodes, NEEDS, 4).release


# --- the builders: gated pods and the patch that releases them ---------------------------------------


def test_gated_pods_and_the_release_patch_pin_only_by_adding() -> None:
    spec = {**SPEC, "capacity": {"type": "spot-then-on-demand"}}
    r = resolve(TrainingJobSpec.parse(spec))
    objs = gated(build_attempt(REF, r, 3))
    pods = [o for o in objs if o["kind"] == "Pod"]
    assert [p["spec"]["schedulingGates"] for p in pods] == [GATE, GATE]
    assert [o for o in objs if o["kind"] != "Pod"] == [
        o for o in build_attempt(REF, r, 3) if o["kind"] != "Pod"
    ]
    patch = release_patch(pods[0], Placement("us-west-2b", "on-demand"))
    terms = pods[0]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert patch == {
        "spec": {
            "schedulingGates": None,
            "nodeSelector": {"topology.kubernetes.io/zone": "us-west-2b"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    *terms[0]["matchExpressions"],
                                    {
                                        "key": "karpenter.sh/capacity-type",
                                        "operator": "In",
                                        "values": ["on-demand", "reserved"],
                                    },
                                ]
                            },
                            {
                                "matchExpressions": [
                                    *terms[1]["matchExpressions"],
                                    {
                                        "key": "eks.amazonaws.com/capacityType",
                                        "operator": "In",
                                        "values": ["ON_DEMAND", "CAPACITY_BLOCK"],
                                    },
                                ]
                            },
                        ]
                    }
                }
            },
        }
    }
    # The user's zone, one capacity type: only the gate goes.
    r = resolve(TrainingJobSpec.parse({**SPEC, "capacity": {"type": "spot", "zone": "us-west-2a"}}))
    (pod_,) = gated([build_pod(REF, r, 1, 0)])
    assert release_patch(pod_, None) == {"spec": {"schedulingGates": None}}
    view = pod_view(pod_)
    assert view is not None and view.gated


def test_target_releases_with_rank_zeros_constraints() -> None:
    body = {"metadata": {"name": "llama", "namespace": "ns", "uid": "u"}, "spec": SPEC}
    t = to_target(body)
    assert isinstance(t, Target) and t.release is not None
    (pod_,) = gated([build_pod(REF, resolve(TrainingJobSpec.parse(SPEC)), 2, 0)])
    assert t.release(2, Placement("us-west-2a")) == release_patch(pod_, Placement("us-west-2a"))
    assert t.policy.gang_bind_timeout_seconds == 60


# --- through decide ----------------------------------------------------------------------------------


class GateBuilder(Builder):
    """Builder whose pods have a spec, so `gated` has somewhere to put the gate."""

    def __call__(
        self,
        attempt: int,
        resume: str | None,
        placement: Placement | None = None,
        size: int | None = None,
    ) -> list[dict[str, Any]]:
        objs = super().__call__(attempt, resume, placement, size)
        return [{**o, "spec": {}} if o["kind"] == "Pod" else o for o in objs]


def placed(b: Builder | None = None, **policy: Any) -> Target:
    t = target(b or GateBuilder(), **policy)

    def release(attempt: int, placement: Placement | None) -> dict[str, Any]:
        return {"spec": {"schedulingGates": None, "zone": placement.zone if placement else None}}

    return dataclasses.replace(t, placement=NEEDS, release=release)


def waiting_gang(attempt: int = 1) -> list[PodView]:
    return [
        pod(attempt, r, phase="Pending", node=None, gated=True, requests=P5_POD) for r in range(4)
    ]


def ready(plan_status: dict[str, Any]) -> dict[str, Any]:
    cond = get_condition(plan_status.get("conditions") or [], "Ready")
    assert cond is not None
    return dict(cond)


def test_short_of_room_the_attempt_is_created_gated_and_says_what_it_waits_for() -> None:
    b = GateBuilder()
    plan = decide(job({}), placed(b), Observed([], {}, all_nodes=zone_nodes(3, 1)), NOW)
    pods = [o for o in plan.creates if o["kind"] == "Pod"]
    assert len(pods) == 4 and all(p["spec"]["schedulingGates"] == GATE for p in pods)
    assert b.calls == [(1, None, None)]  # no zone pinned yet: chosen at release
    cond = ready(plan.status)
    assert cond["reason"] == "WaitingForCapacity" and plan.status["phase"] == "Pending"
    assert (
        "needs 4 x p5.48xlarge (spot) in one zone; 3 free in us-west-2a, 1 free in us-west-2b"
        in (cond["message"])
    )
    assert plan.requeue_after == GATE_POLL_SECONDS
    assert [e.reason for e in plan.events] == ["WaitingForCapacity"]


def test_room_for_the_whole_gang_creates_it_ungated_with_a_bind_deadline() -> None:
    plan = decide(job({}), placed(), Observed([], {}, all_nodes=zone_nodes(1, 4)), NOW)
    pods = [o for o in plan.creates if o["kind"] == "Pod"]
    assert pods and all("schedulingGates" not in p["spec"] for p in pods)
    assert plan.status["releaseTime"] == at(0) and plan.status["bindDeadline"] == at(60)
    assert plan.status["zone"] == "us-west-2b"


def test_a_gated_gang_waits_without_startup_timeout_and_events_only_on_new_news() -> None:
    t = placed(startup_timeout_seconds=60)
    status = {"attempt": 1, "attemptStartTime": at(-3600)}
    first = decide(job(status), t, Observed(waiting_gang(), {}, all_nodes=zone_nodes(3, 1)), NOW)
    assert not first.deletes and not first.patches
    assert ready(first.status)["reason"] == "WaitingForCapacity"
    assert waits_for_room(first.status)  # room coming free wakes it (PodIndex.waiting_jobs)
    # Same news: no Event; the status does not even change.
    again = decide(
        job(first.status), t, Observed(waiting_gang(), {}, all_nodes=zone_nodes(3, 1)), NOW
    )
    assert not again.events and not again.status_changed
    # A node freed elsewhere changes what it waits for: one Event with the new message.
    later = decide(
        job(first.status), t, Observed(waiting_gang(), {}, all_nodes=zone_nodes(3, 2)), NOW
    )
    assert [(e.reason, "2 free in us-west-2b" in e.message) for e in later.events] == [
        ("WaitingForCapacity", True)
    ]


def test_room_for_the_whole_gang_releases_every_gated_pod_at_once() -> None:
    status = {"attempt": 1, "attemptStartTime": at(-3600)}
    gang = waiting_gang()
    gang[2] = dataclasses.replace(gang[2], gated=False)  # an earlier release got this far
    plan = decide(job(status), placed(), Observed(gang, {}, all_nodes=zone_nodes(3, 4)), NOW)
    patch = {"spec": {"schedulingGates": None, "zone": "us-west-2b"}}
    assert plan.patches == tuple(PodPatch(name(1, r), patch) for r in (0, 1, 3))
    assert not waits_for_room(plan.status)
    assert plan.status["releaseTime"] == at(0) and plan.status["bindDeadline"] == at(60)
    assert plan.status["zone"] == "us-west-2b"
    assert ready(plan.status)["reason"] == "Pending"
    assert plan.requeue_after == 60


def test_no_known_node_of_the_kind_releases_for_the_provisioner_without_bind_deadline() -> None:
    status = {"attempt": 1, "attemptStartTime": at(0)}
    plan = decide(job(status), placed(), Observed(waiting_gang(), {}, all_nodes=[]), NOW)
    assert len(plan.patches) == 4
    assert plan.status["releaseTime"] == at(0) and "bindDeadline" not in plan.status
    assert "provisioner" in ready(plan.status)["message"]


UNSCHEDULABLE = "0/12 nodes are available: 1 Insufficient nvidia.com/gpu."


def released(
    bound: int, since: float, verdict: str | None = UNSCHEDULABLE
) -> tuple[dict[str, Any], list[PodView]]:
    """A gang released `since` seconds ago with `bound` pods bound; the scheduler's `verdict` on
    the others (None: it has not looked at them yet)."""
    status = {
        "attempt": 1,
        "attemptStartTime": at(since - 600),
        "releaseTime": at(since),
        "bindDeadline": at(since + 60),
    }
    gang = [
        pod(1, r, phase="Running", node=f"a{r}")
        if r < bound
        else pod(1, r, phase="Pending", node=None, unschedulable=verdict)
        for r in range(4)
    ]
    return status, gang


def test_a_gang_not_bound_within_the_bind_timeout_goes_and_waits_gated_again() -> None:
    status, gang = released(bound=3, since=-61)
    nodes = {f"a{r}": node_with_room(f"a{r}", "us-west-2a") for r in range(3)}
    plan = decide(job(status), placed(), Observed(gang, nodes), NOW)
    assert {d.name for d in plan.deletes} == {name(1, r) for r in range(4)}
    assert plan.status["restartAfter"] == at(0)
    assert plan.status["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    cond = ready(plan.status)
    assert cond["reason"] == "GangBindTimeout"
    assert (
        "only 3/4 pods bound" in cond["message"] and "gangBindTimeoutSeconds=60" in cond["message"]
    )
    # Before the deadline it waits (and wakes at the deadline).
    status, gang = released(bound=3, since=-30)
    plan = decide(job(status), placed(), Observed(gang, nodes), NOW)
    assert not plan.deletes and plan.requeue_after is not None and plan.requeue_after <= 30.1


def test_a_gang_the_scheduler_has_not_judged_yet_keeps_waiting_past_the_bind_deadline() -> None:
    """Thousands of pods released at once take the scheduler minutes: pods it has not looked at
    are a queue, not room someone else took (at 1,000 gangs most went to GangBindTimeout and
    started over, issue 14). startupTimeoutSeconds still bounds the wait."""
    status, gang = released(bound=3, since=-61, verdict=None)
    nodes = {f"a{r}": node_with_room(f"a{r}", "us-west-2a") for r in range(3)}
    plan = decide(job(status), placed(), Observed(gang, nodes), NOW)
    assert not plan.deletes and ready(plan.status)["reason"] != "GangBindTimeout"
    assert plan.status["bindDeadline"] == status["bindDeadline"]  # judged later: it goes then


def test_a_fully_bound_gang_drops_the_bind_deadline_and_startup_counts_from_release() -> None:
    status, gang = released(bound=4, since=-61)
    nodes = {f"a{r}": node_with_room(f"a{r}", "us-west-2a") for r in range(4)}
    plan = decide(job(status), placed(), Observed(gang, nodes), NOW)
    assert not plan.deletes and "bindDeadline" not in plan.status
    assert ready(plan.status)["reason"] == "AllRanksRunning"
    # Bound but not running: the startup timeout runs from the release, not the creation.
    status, gang = released(bound=4, since=-100)
    status.pop("bindDeadline")
    gang = [dataclasses.replace(p, phase="Pending", ready=False) for p in gang]
    t = placed(startup_timeout_seconds=120)
    plan = decide(job(status), t, Observed(gang, nodes), NOW)
    assert not plan.deletes and ready(plan.status)["reason"] != "StartupTimeout"


# --- claims: pods just pinned, until the watch shows them ------------------------------------------


def test_claims_cover_the_watch_lag_and_no_longer() -> None:
    clock = [0.0]
    claims = Claims(clock=lambda: clock[0])
    created = {"kind": "Pod", "metadata": {"name": "a-1-0", "namespace": "ns", "labels": {}}}
    gang = waiting_gang()
    plan = Plan(
        status={},
        creates=(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "other-1-0",
                    "namespace": NS,
                    "labels": {"kubetrain.dev/job": "other", "kubetrain.dev/attempt": "1"},
                },
                "spec": {"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2a"}},
            },
            created,
        ),
        patches=(
            PodPatch(
                name(1, 0),
                {"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2b"}}},
            ),
        ),
    )
    views = claimed(plan, gang)
    assert [(v.name, v.zone_pin, v.gated) for v in views] == [
        ("other-1-0", "us-west-2a", False),
        (name(1, 0), "us-west-2b", False),
    ]
    claims.add(views)
    # Not delivered by the watch yet, or delivered still gated: counted.
    claims.saw(gang[0])
    assert claims.pending() == views
    # The watch delivered the released pod: the index counts it from now on.
    claims.saw(
        dataclasses.replace(
            gang[0], gated=False, selector=(("topology.kubernetes.io/zone", "us-west-2b"),)
        )
    )
    assert claims.pending() == views[:1]
    clock[0] = Claims.TTL_SECONDS / 2
    claims.add(views[1:])  # claimed again (a later release): counted until its own expiry
    clock[0] = Claims.TTL_SECONDS + 1
    assert claims.pending() == views[1:]
    claims.saw(views[1], gone=True)  # deleted while gated: no longer anyone's room
    assert claims.pending() == []
    claims.add(views)
    clock[0] += Claims.TTL_SECONDS + 1
    assert claims.pending() == []  # the watch never showed them: not held forever


def test_elastic_gang_gated_at_full_size_shrinks_once_shrink_after_has_passed() -> None:
    t = placed(min_nodes=2, shrink_after_seconds=120)
    status = {"attempt": 2, "attemptStartTime": at(-60), "zone": "us-west-2a"}
    observed = Observed(waiting_gang(2), {}, all_nodes=zone_nodes(2, 1))
    waiting = decide(job(status), t, observed, NOW)
    assert ready(waiting.status)["reason"] == "WaitingForCapacity" and not waiting.deletes
    assert waiting.requeue_after is not None and waiting.requeue_after <= 60.1
    status["attemptStartTime"] = at(-121)
    plan = decide(job(status), t, observed, NOW)
    assert ready(plan.status)["reason"] == "Resized"
    assert {d.name for d in plan.deletes} == {name(2, r) for r in range(4)}
    assert plan.status["restartAfter"] == at(-121)
    assert plan.status["restarts"]["total"] == 0
    # The next attempt runs on the 2 nodes there are, pinned where they are, ungated.
    b = GateBuilder()
    nxt = decide(
        job(plan.status),
        placed(b, min_nodes=2, shrink_after_seconds=120),
        Observed([], {}, all_nodes=zone_nodes(2, 1)),
        NOW,
    )
    assert b.calls == [(3, None, Placement("us-west-2a"))]
    assert nxt.status["size"]["current"] == 2
    pods = [o for o in nxt.creates if o["kind"] == "Pod"]
    assert len(pods) == 2 and all("schedulingGates" not in p["spec"] for p in pods)


def test_a_pod_scheduling_gated_is_not_unschedulable() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "p", "labels": {"kubetrain.dev/job": "j"}},
        "spec": {"schedulingGates": GATE},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
        },
    }
    view = pod_view(body)
    assert view is not None and view.gated and view.unschedulable is None
    body["status"]["conditions"][0]["reason"] = "Unschedulable"
    body["status"]["conditions"][0]["message"] = "0/4 nodes are available"
    view = pod_view(body)
    assert view is not None and view.unschedulable == "0/4 nodes are available"


def test_a_node_still_tainted_not_ready_is_not_room() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "us-west-2a"}},
        "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    view = node_view(body)
    assert view.ready and view.blocked
    assert room([view], PlacementNeeds(None, ())) == {}
    body["spec"]["taints"] = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert room([node_view(body)], PlacementNeeds(None, ())) == {(None, "us-west-2a"): 1}


# --- with the other gang levels: native PodGroups, Kueue, elastic sizes ------------------------------


def test_native_gang_mode_creates_no_gate_and_no_bind_deadline() -> None:
    """The scheduler gangs a PodGroup's pods: the operator neither gates nor times the binding."""
    t = dataclasses.replace(placed(), gang=GangScheduling.NATIVE)
    plan = decide(job({}), t, Observed([], {}, all_nodes=zone_nodes(3, 1)), NOW)
    pods = [o for o in plan.creates if o["kind"] == "Pod"]
    assert len(pods) == 4 and all("schedulingGates" not in p["spec"] for p in pods)
    assert ready(plan.status)["reason"] == "Pending" and "bindDeadline" not in plan.status
    assert plan.requeue_after == 600  # startupTimeoutSeconds, not the bind timeout
    # Gated pods left by a run in kubetrain mode are released at once, whatever the room.
    status = {"attempt": 1, "attemptStartTime": at(-60)}
    plan = decide(job(status), t, Observed(waiting_gang(), {}, all_nodes=zone_nodes(3, 1)), NOW)
    assert len(plan.patches) == 4 and "bindDeadline" not in plan.status
    assert ready(plan.status)["reason"] == "Pending"


def test_a_native_gang_the_scheduler_holds_waits_without_startup_timeout_then_counts_from_binding() -> (
    None
):
    """Native PodGroups bind all or none: an unbound gang holds no node, and a new attempt would
    queue the same way, so it waits; startupTimeoutSeconds (600 here) counts from the binding."""
    t = dataclasses.replace(placed(), gang=GangScheduling.NATIVE)
    why = "0/16 nodes are available: pod group is unschedulable"
    holding = [pod(1, r, phase="Pending", node=None, unschedulable=why) for r in range(4)]
    status = {"attempt": 1, "attemptStartTime": at(-2000)}
    node_map = {f"a{r}": node_with_room(f"a{r}", "us-west-2a") for r in range(4)}
    plan = decide(job(status), t, Observed(holding, node_map), NOW)
    assert not plan.deletes and not plan.creates and plan.status["attempt"] == 1
    cond = ready(plan.status)
    assert cond["reason"] == "Unschedulable" and "pod group is unschedulable" in cond["message"]
    assert "holding no node" in cond["message"] and "releaseTime" not in plan.status
    # Bound now, 2,000 s after the attempt began: the clock starts here, no timeout.
    bound = [pod(1, r, phase="Pending", node=f"a{r}") for r in range(4)]
    plan = decide(job(status), t, Observed(bound, node_map), NOW)
    assert not plan.deletes and plan.status["releaseTime"] == at(0)
    assert ready(plan.status)["reason"] != "StartupTimeout"
    # Still not running 601 s after binding: the startup timeout applies as in any mode.
    later = {**status, "releaseTime": at(-601)}
    plan = decide(job(later), t, Observed(bound, node_map), NOW)
    assert ready(plan.status)["reason"] == "StartupTimeout" and len(plan.deletes) == 4


def test_to_target_carries_the_gang_mode() -> None:
    body = {"metadata": {"name": "llama", "namespace": "ns", "uid": "u"}, "spec": SPEC}
    kubetrain, native = to_target(body), to_target(body, GangScheduling.NATIVE)
    assert isinstance(kubetrain, Target) and kubetrain.gang is GangScheduling.KUBETRAIN
    assert isinstance(native, Target) and native.gang is GangScheduling.NATIVE


def flavored(zone: str, n: int) -> list[NodeView]:
    return [
        dataclasses.replace(
            node_with_room(f"{zone[-1]}{i}-k", zone), labels=((SPOT.node_labels[0]),)
        )
        for i in range(n)
    ]


def test_kueue_admitted_gang_counts_room_only_on_its_flavors_nodes() -> None:
    """Kueue admits quota, not nodes: after admission the gate still waits for room, on the nodes
    the flavor's labels send the pods to."""
    admitted = queue.queue_state("gpus", ADMITTED, [SPOT])
    assert admitted.runs
    # 4 free nodes in us-west-2b without the flavor's label, 2 with it in us-west-2a: gated.
    nodes = flavored("us-west-2a", 2) + [node_with_room(f"b{i}", "us-west-2b") for i in range(4)]
    plan = decide(job({}), placed(), Observed([], {}, all_nodes=nodes, queue=admitted), NOW)
    pods = [o for o in plan.creates if o["kind"] == "Pod"]
    assert len(pods) == 4 and all(p["spec"]["schedulingGates"] == GATE for p in pods)
    assert all(p["spec"]["nodeSelector"] == dict(SPOT.node_labels) for p in pods)
    assert "2 free in us-west-2a" in ready(plan.status)["message"]
    # 4 of the flavor's nodes: created ungated, with the flavor's node labels and a bind deadline.
    nodes = flavored("us-west-2a", 4)
    plan = decide(job({}), placed(), Observed([], {}, all_nodes=nodes, queue=admitted), NOW)
    pods = [o for o in plan.creates if o["kind"] == "Pod"]
    assert len(pods) == 4 and all("schedulingGates" not in p["spec"] for p in pods)
    assert all(p["spec"]["nodeSelector"] == dict(SPOT.node_labels) for p in pods)
    assert plan.status["bindDeadline"] == at(60)
    # Not admitted: no pod at all, gated or not.
    pending = queue.queue_state("gpus", PENDING)
    plan = decide(job({}), placed(), Observed([], {}, all_nodes=nodes, queue=pending), NOW)
    assert not plan.creates and ready(plan.status)["reason"] == "Queued"


def test_an_elastic_attempt_of_fewer_pods_is_released_when_its_own_pods_fit() -> None:
    """An attempt started on 2 of 4 nodes waits for room for 2, not for spec.nodes."""
    t = placed(min_nodes=2, shrink_after_seconds=120)
    status = {
        "attempt": 3,
        "attemptStartTime": at(-10),
        "size": {"current": 2, "desired": 4},
    }
    gang = waiting_gang(3)[:2]
    plan = decide(job(status), t, Observed(gang, {}, all_nodes=zone_nodes(1, 0)), NOW)
    assert not plan.patches and ready(plan.status)["reason"] == "WaitingForCapacity"
    assert "needs 2 x p5.48xlarge" in ready(plan.status)["message"]
    plan = decide(job(status), t, Observed(gang, {}, all_nodes=zone_nodes(1, 2)), NOW)
    assert [p.name for p in plan.patches] == [name(3, 0), name(3, 1)]
    assert plan.status["bindDeadline"] == at(60) and plan.status["zone"] == "us-west-2b"


def test_a_kueue_gang_waiting_gated_is_released_only_into_its_flavors_nodes() -> None:
    admitted = queue.queue_state("gpus", ADMITTED, [SPOT])
    status = {"attempt": 1, "attemptStartTime": at(-60)}
    unlabelled = [node_with_room(f"b{i}", "us-west-2b") for i in range(4)]
    observed = Observed(
        waiting_gang(), {}, all_nodes=flavored("us-west-2a", 3) + unlabelled, queue=admitted
    )
    plan = decide(job(status), placed(), observed, NOW)
    assert not plan.patches and ready(plan.status)["reason"] == "WaitingForCapacity"
    observed = dataclasses.replace(observed, all_nodes=flavored("us-west-2a", 4) + unlabelled)
    plan = decide(job(status), placed(), observed, NOW)
    assert len(plan.patches) == 4 and plan.status["zone"] == "us-west-2a"
