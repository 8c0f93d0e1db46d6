"""Zone-aware gang placement: the operator picks each attempt's zone from the nodes it knows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from test_reconcile_decide import Builder, job, target

from kubetrain.api.constants import TAINT_KARPENTER_DISRUPTED, TAINT_NTH_REBALANCE
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import JobRef, Placement, build_attempt, build_pod, resolve
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.observe import (
    NodeView,
    PodView,
    Usage,
    UsageIndex,
    node_view,
    tolerates,
)
from kubetrain.reconcile.plan import Observed, PlacementNeeds, Target
from kubetrain.reconcile.target import to_target
from kubetrain.reconcile.zones import choose_zone, room

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
P5_SPOT = PlacementNeeds("p5.48xlarge", ("spot",))


def n(
    name: str,
    zone: str,
    *,
    itype: str = "p5.48xlarge",
    cap: str | None = "spot",
    ready: bool = True,
    cordoned: bool = False,
    taints: tuple[str, ...] = (),
) -> NodeView:
    return NodeView(name, ready, cordoned, zone, taints, instance_type=itype, capacity_type=cap)


A = [n(f"a{i}", "us-west-2a") for i in range(4)]
B = [n(f"b{i}", "us-west-2b") for i in range(4)]


@pytest.mark.parametrize(
    ("nodes", "needs", "size", "avoid", "previous", "want"),
    [
        # Ties broken by name; the previous zone kept while it has room for the gang.
        (A + B, P5_SPOT, 2, (), None, "us-west-2a"),
        (A + B, P5_SPOT, 2, (), "us-west-2b", "us-west-2b"),
        # The previous zone lost nodes (avoided, tainted, NotReady, cordoned): go where room is.
        (A + B[:1], P5_SPOT, 2, (), "us-west-2b", "us-west-2a"),
        (A + B, P5_SPOT, 4, ("b0",), "us-west-2b", "us-west-2a"),
        (
            [*A, *B[:3], n("b3", "us-west-2b", taints=(TAINT_KARPENTER_DISRUPTED,))],
            P5_SPOT,
            4,
            (),
            "us-west-2b",
            "us-west-2a",
        ),
        (
            [*A, *B[:3], n("b3", "us-west-2b", taints=(TAINT_NTH_REBALANCE,))],
            P5_SPOT,
            4,
            (),
            "us-west-2b",
            "us-west-2a",
        ),
        (
            [*A, *B[:3], n("b3", "us-west-2b", ready=False)],
            P5_SPOT,
            4,
            (),
            "us-west-2b",
            "us-west-2a",
        ),
        (
            [*A, *B[:3], n("b3", "us-west-2b", cordoned=True)],
            P5_SPOT,
            4,
            (),
            "us-west-2b",
            "us-west-2a",
        ),
        # Only matching instance and capacity types count.
        (
            A[:1] + [n(f"x{i}", "us-west-2a", itype="p4d.24xlarge") for i in range(3)] + B[:2],
            P5_SPOT,
            2,
            (),
            None,
            "us-west-2b",
        ),
        (
            A[:1] + [n(f"x{i}", "us-west-2a", cap="on-demand") for i in range(3)] + B[:2],
            P5_SPOT,
            2,
            (),
            None,
            "us-west-2b",
        ),
        # spot-then-on-demand: spot first wherever it has room for the whole gang.
        (
            [n(f"x{i}", "us-west-2a", cap="on-demand") for i in range(3)] + B[:2],
            PlacementNeeds("p5.48xlarge", ("spot", "on-demand")),
            2,
            (),
            None,
            "us-west-2b",
        ),
        (
            [n(f"x{i}", "us-west-2a", cap="on-demand") for i in range(3)] + B[:1],
            PlacementNeeds("p5.48xlarge", ("spot", "on-demand")),
            2,
            (),
            None,
            "us-west-2a",
        ),
        (A + B, PlacementNeeds(None, ()), 2, (), None, "us-west-2a"),
        # Nothing known fits (Karpenter from zero): the scheduler/autoscaler chooses.
        ([], P5_SPOT, 2, (), None, None),
        (A, PlacementNeeds("trn1.32xlarge", ()), 2, (), None, None),
        # The user pinned a zone: nothing to choose.
        (
            A + B,
            PlacementNeeds("p5.48xlarge", ("spot",), "us-west-2b"),
            2,
            (),
            None,
            None,
        ),
        # Not enough room anywhere: the zone with the most (an autoscaler may add the rest).
        (A[:1] + B[:1] + [n("b9", "us-west-2b")], P5_SPOT, 4, (), "us-west-2a", "us-west-2b"),
    ],
)
def test_choose_zone(
    nodes: list[NodeView],
    needs: PlacementNeeds,
    size: int,
    avoid: tuple[str, ...],
    previous: str | None,
    want: str | None,
) -> None:
    chosen = choose_zone(nodes, needs, size, avoid, previous)
    assert (chosen.zone if chosen else None) == want


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"karpenter.sh/capacity-type": "spot"}, "spot"),
        ({"karpenter.sh/capacity-type": "reserved"}, "on-demand"),
        ({"eks.amazonaws.com/capacityType": "SPOT"}, "spot"),
        ({"eks.amazonaws.com/capacityType": "CAPACITY_BLOCK"}, "on-demand"),
        ({}, None),
    ],
)
def test_node_view_reads_both_capacity_dialects(labels: dict[str, str], want: str | None) -> None:
    body: dict[str, Any] = {
        "metadata": {
            "name": "x",
            "labels": {"node.kubernetes.io/instance-type": "p5.48xlarge", **labels},
        },
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    view = node_view(body)
    assert (view.capacity_type, view.instance_type) == (want, "p5.48xlarge")


def test_node_view_reads_the_spot_notice_time() -> None:
    body = {
        "metadata": {
            "name": "x",
            "annotations": {
                "kubetrain.dev/spot-notice": '{"action": "terminate", "time": "2026-03-01T12:02:00Z"}'
            },
        }
    }
    assert node_view(body).notice_time == "2026-03-01T12:02:00Z"
    body["metadata"]["annotations"]["kubetrain.dev/spot-notice"] = "not json"
    assert node_view(body).notice_time is None


# --- through decide and the builders -------------------------------------------------------------


def test_next_attempt_is_pinned_to_the_chosen_zone_and_status_records_it() -> None:
    b = Builder()
    t = target(b, nodes=2)
    t = Target(t.policy, t.build, t.pod_name, placement=P5_SPOT)
    status = {"attempt": 1, "restartAfter": "2026-03-01T11:00:00Z", "zone": "us-west-2b"}
    status["interruptions"] = [{"node": "b0", "attempt": 1, "reason": "node-lost"}]
    plan = decide(job(status), t, Observed([], {}, all_nodes=A + B[:2]), NOW)
    # b0 avoided leaves one node in 2b: the gang of 2 goes to 2a.
    assert b.calls == [(2, None, Placement(zone="us-west-2a"))]
    assert plan.status["zone"] == "us-west-2a"


def test_no_placement_needs_keeps_the_old_builder_call() -> None:
    b = Builder()
    decide(job({}), target(b), Observed([], {}, all_nodes=A + B), NOW)
    assert b.calls == [(1, None, None)]


SPEC = {
    "image": "train:1",
    "command": ["python", "train.py"],
    "nodes": 2,
    "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
    "capacity": {"type": "spot"},
}
REF = JobRef(name="llama", namespace="ns", uid="u")


def test_zone_keyword_pins_the_zone_and_drops_the_pod_affinity() -> None:
    r = resolve(TrainingJobSpec.parse(SPEC))
    free = build_pod(REF, r, 1, 0)
    pinned = build_pod(REF, r, 1, 0, placement=Placement(zone="us-west-2b"))
    assert "podAffinity" in free["spec"]["affinity"]
    assert "topology.kubernetes.io/zone" not in free["spec"]["nodeSelector"]
    assert pinned["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-west-2b"
    assert "podAffinity" not in pinned["spec"]["affinity"]
    # Only the placement differs.
    del free["spec"]["affinity"]["podAffinity"], free["spec"]["nodeSelector"]
    del pinned["spec"]["nodeSelector"]
    assert free == pinned
    placement = Placement(zone="us-west-2b")
    pods = [o for o in build_attempt(REF, r, 1, placement=placement) if o["kind"] == "Pod"]
    assert {p["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] for p in pods} == {
        "us-west-2b"
    }


def test_spec_zone_wins_over_the_chosen_one() -> None:
    r = resolve(TrainingJobSpec.parse({**SPEC, "capacity": {"type": "spot", "zone": "us-west-2a"}}))
    pod = build_pod(REF, r, 1, 0, placement=Placement(zone="us-west-2b"))
    assert pod["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-west-2a"


def test_target_carries_the_placement_needs() -> None:
    body = {"metadata": {"name": "llama", "namespace": "ns", "uid": "u"}, "spec": SPEC}
    t = to_target(body)
    assert isinstance(t, Target)
    assert t.placement is not None
    assert dataclasses.replace(t.placement, per_pod=()) == P5_SPOT
    assert t.policy.checkpoint_deadline_seconds == 90


# --- free capacity (issue #8: every gang landed in one zone beside idle nodes) ----------------------

P5_ALLOC = (
    ("aws.amazon.com/neuron", 0),
    ("cpu", 191_450),
    ("memory", 2_000 * 2**30),
    ("nvidia.com/gpu", 8),
    ("pods", 110),
    ("vpc.amazonaws.com/efa", 32),
)
P5_POD = (("cpu", 180_000), ("memory", 1_800 * 2**30), ("nvidia.com/gpu", 8), ("pods", 1))


def node_with_room(name: str, zone: str, cap: str = "spot", itype: str = "p5.48xlarge") -> NodeView:
    labels = {
        "kubernetes.io/hostname": name,
        "node.kubernetes.io/instance-type": itype,
        "topology.kubernetes.io/zone": zone,
    }
    return NodeView(
        name,
        True,
        False,
        zone,
        (),
        instance_type=itype,
        capacity_type=cap,
        allocatable=P5_ALLOC,
        labels=tuple(sorted(labels.items())),
    )


def worker_on(node: str, job: str = "other") -> PodView:
    return PodView(
        "ns",
        f"{job}-{node}",
        "u",
        job,
        1,
        0,
        "Running",
        node,
        None,
        True,
        None,
        None,
        None,
        None,
        None,
        requests=P5_POD,
    )


NEEDS = PlacementNeeds("p5.48xlarge", ("spot",), per_pod=P5_POD)


def test_the_zone_with_free_gpus_wins_over_the_zone_with_more_nodes() -> None:
    nodes = [node_with_room(f"a{i}", "us-west-2a") for i in range(4)]
    nodes += [node_with_room(f"b{i}", "us-west-2b") for i in range(2)]
    busy = [worker_on(f"a{i}") for i in range(3)]  # one free node left in 2a
    chosen = choose_zone(nodes, NEEDS, 2, previous="us-west-2a", usage=Usage.of(busy))
    assert chosen == Placement(zone="us-west-2b")
    # Finished pods hold nothing.
    done = Usage.of(dataclasses.replace(p, phase="Succeeded") for p in busy)
    assert choose_zone(nodes, NEEDS, 2, previous="us-west-2a", usage=done) == Placement(
        zone="us-west-2a"
    )


@pytest.mark.parametrize(
    ("busy_spot", "want"),
    [
        ((), Placement("us-west-2a", "spot")),  # spot first when it has room
        (("s0", "s1"), Placement("us-west-2b", "on-demand")),  # spot full: on-demand pinned
    ],
)
def test_spot_then_on_demand_pins_the_capacity_type_with_room(
    busy_spot: tuple[str, ...], want: Placement
) -> None:
    nodes = [node_with_room(f"s{i}", "us-west-2a") for i in range(2)]
    nodes += [node_with_room(f"o{i}", "us-west-2b", cap="on-demand") for i in range(2)]
    needs = PlacementNeeds("p5.48xlarge", ("spot", "on-demand"), per_pod=P5_POD)
    busy = Usage.of(worker_on(n) for n in busy_spot)
    assert choose_zone(nodes, needs, 2, usage=busy) == want


def test_target_reads_what_one_pod_requests_from_the_builders() -> None:
    body = {"metadata": {"name": "llama", "namespace": "ns", "uid": "u"}, "spec": SPEC}
    t = to_target(body)
    assert isinstance(t, Target) and t.placement is not None
    per_pod = dict(t.placement.per_pod)
    assert per_pod["nvidia.com/gpu"] == 8 and per_pod["pods"] == 1
    assert per_pod["vpc.amazonaws.com/efa"] == 32


def test_another_gangs_pods_pinned_to_a_zone_and_waiting_take_its_room() -> None:
    """Three gangs restarting at once: the second must not pick the free nodes the first is
    about to take (its pods exist, pinned to us-west-2a, not bound yet)."""
    nodes = [node_with_room(f"a{i}", "us-west-2a") for i in range(2)]
    nodes += [node_with_room(f"b{i}", "us-west-2b") for i in range(2)]
    first = PodView(
        "ns",
        "other-2-0",
        "u",
        "other",
        2,
        0,
        "Pending",
        None,
        None,
        False,
        None,
        None,
        None,
        None,
        None,
        requests=P5_POD,
        selector=(
            ("node.kubernetes.io/instance-type", "p5.48xlarge"),
            ("topology.kubernetes.io/zone", "us-west-2a"),
        ),
    )
    waiting = [first, dataclasses.replace(first, name="other-2-1", rank=1)]
    assert choose_zone(nodes, NEEDS, 2, previous="us-west-2a") == Placement(zone="us-west-2a")
    chosen = choose_zone(nodes, NEEDS, 2, previous="us-west-2a", usage=Usage.of(waiting))
    assert chosen == Placement(zone="us-west-2b")


def test_pods_pinned_where_none_of_the_gangs_nodes_match_take_none_of_its_room() -> None:
    """Another gang's pods waiting in the zone take room only on the nodes their nodeSelector
    matches: ten gangs each pinned to its own node (bench-scale's spot-notice gangs) waited for
    one another, released one at a time."""
    nodes = [node_with_room("a0", "us-west-2a"), node_with_room("a1", "us-west-2a")]
    zone = ("topology.kubernetes.io/zone", "us-west-2a")
    elsewhere = dataclasses.replace(
        worker_on("a1"),
        node=None,
        phase="Pending",
        selector=(("topology.kubernetes.io/zone", "us-west-2a"),),
    )
    on_a1 = dataclasses.replace(elsewhere, selector=(("kubernetes.io/hostname", "a1"), zone))
    on_c5 = dataclasses.replace(
        elsewhere, uid="c", selector=(("node.kubernetes.io/instance-type", "c5.large"), zone)
    )
    only_a0 = dataclasses.replace(NEEDS, node_selector=(("kubernetes.io/hostname", "a0"),))
    assert room(nodes, only_a0, usage=Usage.of([on_a1, on_c5])) == {("spot", "us-west-2a"): 1}
    # Matching the gang's node, or pinned by zone alone: it takes its pod's worth of the zone.
    on_a0 = dataclasses.replace(on_a1, uid="z", selector=(("kubernetes.io/hostname", "a0"), zone))
    assert room(nodes, only_a0, usage=Usage.of([on_a0])) == {("spot", "us-west-2a"): 0}
    anywhere = dataclasses.replace(on_a1, uid="y", selector=(zone,))
    assert room(nodes, NEEDS, usage=Usage.of([anywhere])) == {("spot", "us-west-2a"): 1}


def test_the_usage_index_follows_pod_events_and_forgets_gone_pods() -> None:
    """The operator's index, moved event by event, counts what a fresh count of the same pods
    would; a job's own waiting pods are left out of its own choice."""
    index = UsageIndex()
    pending = dataclasses.replace(
        worker_on("a0"),
        node=None,
        phase="Pending",
        selector=(("topology.kubernetes.io/zone", "us-west-2a"),),
    )
    bound = dataclasses.replace(pending, node="a0", phase="Running")
    other = dataclasses.replace(worker_on("a1"), uid="v")
    index.update(pending)
    index.update(other)
    assert index.usage(["a0", "a1"]) == Usage.of([pending, other])
    assert index.nodes() == ["a1"]
    assert index.usage(["a0", "a1"]).waiting == {("us-west-2a", pending.selector, ()): 1}
    assert index.usage(["a0", "a1"], exclude=[pending]).waiting == {}
    index.update(bound)
    assert index.usage(["a0", "a1"]) == Usage.of([bound, other])
    assert sorted(index.nodes()) == ["a0", "a1"]
    assert index.usage(["a1"]).used == {"a1": dict(P5_POD)}
    index.update(dataclasses.replace(bound, phase="Succeeded"))  # finished: holds nothing
    index.forget(other.uid)  # deleted
    assert index.usage(["a0", "a1"]) == Usage() and index.nodes() == []


def test_pods_pinned_to_the_zone_take_no_room_on_nodes_whose_taints_they_do_not_tolerate() -> None:
    """bench-scale's spot-notice gangs: each on its own tainted node, waiting for the hundred
    other gangs' pods pinned to the zone, none of which could go there."""
    taint = ("bench.kubetrain.dev/notice", "x", "NoSchedule")
    tainted = dataclasses.replace(node_with_room("n0", "us-west-2a"), taints=(taint,))
    zone = ("topology.kubernetes.io/zone", "us-west-2a")
    plain = dataclasses.replace(worker_on("a1"), node=None, phase="Pending", selector=(zone,))
    assert room([tainted], NEEDS, usage=Usage.of([plain])) == {("spot", "us-west-2a"): 1}
    tolerant = dataclasses.replace(
        plain, uid="t", tolerations=(("bench.kubetrain.dev/notice", "Exists", "", ""),)
    )
    assert room([tainted], NEEDS, usage=Usage.of([tolerant])) == {("spot", "us-west-2a"): 0}


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        (("k", "Equal", "v", "NoSchedule"), True),
        (("k", "Equal", "v", ""), True),  # any effect
        (("k", "Exists", "", "NoSchedule"), True),  # any value
        (("", "Exists", "", ""), True),  # everything
        (("k", "Equal", "w", "NoSchedule"), False),
        (("k", "Equal", "v", "NoExecute"), False),
        (("j", "Exists", "", ""), False),
    ],
)
def test_tolerations_match_taints_as_kubernetes_does(
    toleration: tuple[str, str, str, str], tolerated: bool
) -> None:
    assert tolerates([toleration], [("k", "v", "NoSchedule")]) is tolerated
    assert tolerates([], []) and not tolerates([], [("k", "v", "NoSchedule")])


def test_node_view_keeps_the_taints_that_keep_pods_off() -> None:
    body = {
        "metadata": {"name": "n"},
        "spec": {
            "taints": [
                {"key": "a", "value": "1", "effect": "NoSchedule"},
                {"key": "b", "effect": "PreferNoSchedule"},  # a preference: room all the same
                {"key": "c", "effect": "NoExecute"},
            ]
        },
    }
    assert node_view(body).taints == (("a", "1", "NoSchedule"), ("c", "", "NoExecute"))
