"""Zone-aware gang placement: the operator picks each attempt's zone from the nodes it knows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from test_reconcile_decide import Builder, job, target

from kubetrain.api.constants import TAINT_KARPENTER_DISRUPTED, TAINT_NTH_REBALANCE
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import JobRef, build_attempt, build_pod, resolve
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.observe import NodeView, node_view
from kubetrain.reconcile.plan import Observed, PlacementNeeds, Target
from kubetrain.reconcile.target import to_target
from kubetrain.reconcile.zones import choose_zone

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
P5_SPOT = PlacementNeeds("p5.48xlarge", frozenset({"spot"}))


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
        (
            [n(f"x{i}", "us-west-2a", cap="on-demand") for i in range(3)] + B[:2],
            PlacementNeeds("p5.48xlarge", frozenset({"spot", "on-demand"})),
            2,
            (),
            None,
            "us-west-2a",
        ),
        (A + B, PlacementNeeds(None, frozenset()), 2, (), None, "us-west-2a"),
        # Nothing known fits (Karpenter from zero): the scheduler/autoscaler chooses.
        ([], P5_SPOT, 2, (), None, None),
        (A, PlacementNeeds("trn1.32xlarge", frozenset()), 2, (), None, None),
        # The user pinned a zone: nothing to choose.
        (
            A + B,
            PlacementNeeds("p5.48xlarge", frozenset({"spot"}), "us-west-2b"),
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
    assert choose_zone(nodes, needs, size, avoid, previous) == want


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


class ZoneBuilder(Builder):
    """Records the zone too (the operator passes it only when it chose one)."""

    def __init__(self) -> None:
        super().__init__()
        self.zones: list[str | None] = []

    def __call__(  # type: ignore[override]
        self, attempt: int, resume: str | None, avoid: Any, zone: str | None = None
    ) -> list[dict[str, Any]]:
        self.zones.append(zone)
        return super().__call__(attempt, resume, avoid)


def test_next_attempt_is_pinned_to_the_chosen_zone_and_status_records_it() -> None:
    b = ZoneBuilder()
    t = target(b, nodes=2)
    t = Target(t.policy, t.build, t.pod_name, placement=P5_SPOT)
    status = {"attempt": 1, "restartAfter": "2026-03-01T11:00:00Z", "zone": "us-west-2b"}
    status["interruptions"] = [{"node": "b0", "attempt": 1, "reason": "node-lost"}]
    plan = decide(job(status), t, Observed([], {}, all_nodes=A + B[:2]), NOW)
    # b0 avoided leaves one node in 2b: the gang of 2 goes to 2a.
    assert b.calls == [(2, None, ("b0",))]
    assert b.zones == ["us-west-2a"]
    assert plan.status["zone"] == "us-west-2a"


def test_no_placement_needs_keeps_the_old_builder_call() -> None:
    b = Builder()
    decide(job({}), target(b), Observed([], {}, all_nodes=A + B), NOW)
    assert b.calls == [(1, None, ())]


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
    pinned = build_pod(REF, r, 1, 0, zone="us-west-2b")
    assert "podAffinity" in free["spec"]["affinity"]
    assert "topology.kubernetes.io/zone" not in free["spec"]["nodeSelector"]
    assert pinned["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-west-2b"
    assert "podAffinity" not in pinned["spec"]["affinity"]
    # Only the placement differs.
    del free["spec"]["affinity"]["podAffinity"], free["spec"]["nodeSelector"]
    del pinned["spec"]["nodeSelector"]
    assert free == pinned
    pods = [o for o in build_attempt(REF, r, 1, zone="us-west-2b") if o["kind"] == "Pod"]
    assert {p["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] for p in pods} == {
        "us-west-2b"
    }


def test_spec_zone_wins_over_the_chosen_one() -> None:
    r = resolve(TrainingJobSpec.parse({**SPEC, "capacity": {"type": "spot", "zone": "us-west-2a"}}))
    pod = build_pod(REF, r, 1, 0, zone="us-west-2b")
    assert pod["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-west-2a"


def test_target_carries_the_placement_needs() -> None:
    body = {"metadata": {"name": "llama", "namespace": "ns", "uid": "u"}, "spec": SPEC}
    t = to_target(body)
    assert isinstance(t, Target)
    assert t.placement == P5_SPOT
    assert t.policy.checkpoint_deadline_seconds == 90
