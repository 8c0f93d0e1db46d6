"""Elastic gangs (spec.minNodes): shrink after an interruption when room for every node does not
return within shrinkAfterSeconds, grow back at a coordinated checkpoint when it does."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from test_reconcile_decide import Builder, job, name, pod, reasons, target
from test_reconcile_zones import n

from kubetrain.api.constants import ANNOTATION_CHECKPOINT_REQUEST, REQUEST_REASON_RESIZE
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from kubetrain.build import JobRef, Placement, build_attempt, resolve
from kubetrain.reconcile.decide import decide
from kubetrain.reconcile.observe import NodeView, PodView, Usage
from kubetrain.reconcile.plan import Observed, PlacementNeeds, Target
from kubetrain.status import rfc3339

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
DUE = NOW - dt.timedelta(seconds=10)  # the restart became due 10 s ago
GPUS = (("nvidia.com/gpu", 8),)
P5_SPOT = PlacementNeeds("p5.48xlarge", ("spot",), per_pod=GPUS)
A = [dataclasses.replace(n(f"a{i}", "us-west-2a"), allocatable=GPUS) for i in range(4)]
B = [dataclasses.replace(n(f"b{i}", "us-west-2b"), allocatable=GPUS) for i in range(4)]


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def elastic(builder: Builder, **policy: Any) -> Target:
    t = target(builder, **{"nodes": 4, "min_nodes": 2, "shrink_after_seconds": 120, **policy})
    return Target(t.policy, t.build, t.pod_name, placement=P5_SPOT, spec_hash=t.spec_hash)


def restarting(**extra: Any) -> dict[str, Any]:
    """Attempt 1 was interrupted and torn down; attempt 2 is due since DUE."""
    return {"attempt": 1, "restartAfter": rfc3339(DUE), "zone": "us-west-2a", **extra}


def test_a_restart_waits_for_room_for_every_node_then_resumes_on_fewer() -> None:
    b = Builder()
    t = elastic(b)
    free = A[:2] + B[:1]  # 2 free in 2a, 1 in 2b: no zone has room for 4
    plan = decide(job(restarting()), t, Observed([], {}, all_nodes=free), NOW)
    assert plan.creates == () and b.calls == []
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WaitingForCapacity"
    assert (
        "needs 4 x p5.48xlarge (spot) in one zone; 2 free in us-west-2a, 1 free in us-west-2b"
        in (ready["message"])
    )
    assert "shrinkAfterSeconds=120" in ready["message"]
    assert plan.requeue_after is not None and plan.requeue_after <= 16

    # shrinkAfterSeconds after the restart was due: attempt 2 runs on the 2 free nodes.
    later = DUE + dt.timedelta(seconds=121)
    plan = decide(job(plan.status), t, Observed([], {}, all_nodes=free), later)
    assert b.calls == [(2, None, Placement(zone="us-west-2a"))] and b.sizes == [2]
    assert [o["metadata"]["name"] for o in plan.creates if o["kind"] == "Pod"] == [
        name(2, 0),
        name(2, 1),
    ]
    size = plan.status["size"]
    assert (size["current"], size["desired"]) == (2, 4)
    assert "running on 2 of 4 nodes" in size["reason"]
    assert plan.status["nodes"] == {"ready": 0, "total": 2}


def test_room_for_every_node_starts_the_full_gang_at_once() -> None:
    b = Builder()
    plan = decide(job(restarting()), elastic(b), Observed([], {}, all_nodes=A + B[:1]), NOW)
    assert b.sizes == [None] and b.calls[0][2] == Placement(zone="us-west-2a")
    assert plan.status["size"] == {"current": 4, "desired": 4}


def test_room_for_fewer_than_min_nodes_waits_for_the_whole_gang_as_before() -> None:
    b = Builder()
    later = DUE + dt.timedelta(seconds=500)
    plan = decide(
        job(restarting()), elastic(b, min_nodes=3), Observed([], {}, all_nodes=A[:2]), later
    )
    assert b.sizes == [None]  # the full gang is created and waits for the scheduler
    assert len([o for o in plan.creates if o["kind"] == "Pod"]) == 4


def test_the_first_attempt_never_shrinks() -> None:
    b = Builder()
    decide(job({}), elastic(b), Observed([], {}, all_nodes=A[:2]), NOW)
    assert b.sizes == [None]


def test_without_min_nodes_nothing_changes() -> None:
    b = Builder()
    plan = decide(
        job(restarting()), elastic(b, min_nodes=None), Observed([], {}, all_nodes=A[:2]), NOW
    )
    assert b.sizes == [None] and "size" not in plan.status


def short_gang(attempt: int = 2, size: int = 2, **kw: Any) -> list[PodView]:
    return [pod(attempt, r, node=f"a{r}", requests=GPUS, **kw) for r in range(size)]


def on_nodes(pods: list[PodView]) -> Usage:
    """What the operator's usage index gives for the job's bound pods (their GPUs are taken)."""
    return Usage.of(p for p in pods if p.node)


def running_short() -> dict[str, Any]:
    """Attempt 2 running on 2 of 4 nodes in us-west-2a."""
    b = Builder()
    t = elastic(b)
    later = DUE + dt.timedelta(seconds=121)
    plan = decide(job(restarting()), t, Observed([], {}, all_nodes=A[:2] + B[:1]), later)
    nodes: dict[str, NodeView | None] = {v.name: v for v in A[:2]}
    pods = short_gang()
    observed = Observed(pods, nodes, all_nodes=A[:2], usage=on_nodes(pods))
    plan = decide(job(plan.status), t, observed, later)
    assert plan.status["phase"] == "Running"
    assert plan.status["nodes"] == {"ready": 2, "total": 2}
    return plan.status


def test_a_short_gang_keeps_running_and_looks_again_while_there_is_no_room() -> None:
    status = running_short()
    nodes: dict[str, NodeView | None] = {v.name: v for v in A[:2]}
    pods = short_gang()
    # 2 more free nodes, but in 2b: no zone has room for 4, even counting the gang's own.
    observed = Observed(pods, nodes, all_nodes=A[:2] + B[:2], usage=on_nodes(pods))
    plan = decide(job(status), elastic(Builder()), observed, NOW)
    assert plan.annotates == () and plan.deletes == () and plan.creates == ()
    assert plan.requeue_after is not None and plan.requeue_after <= 16


def test_room_returning_grows_the_gang_back_through_a_coordinated_checkpoint() -> None:
    status = running_short()
    b = Builder()
    t = elastic(b)
    nodes: dict[str, NodeView | None] = {v.name: v for v in A}
    # Two more free nodes in the gang's zone: 2 free + its own 2 = room for 4.
    running = short_gang()
    plan = decide(
        job(status), t, Observed(running, nodes, all_nodes=A, usage=on_nodes(running)), NOW
    )
    requests = [
        CheckpointRequest.decode(a.annotations[ANNOTATION_CHECKPOINT_REQUEST])
        for a in plan.annotates
    ]
    assert [a.name for a in plan.annotates] == [name(2, 0), name(2, 1)]
    assert {r.reason for r in requests if r} == {REQUEST_REASON_RESIZE}
    assert plan.status["phase"] == "Checkpointing" and plan.deletes == ()
    assert ("Interruption", "Resized") in reasons(plan)

    request = requests[0]
    assert request is not None
    pods = short_gang(requested=request)
    pods[0] = pod(
        2,
        0,
        node="a0",
        requested=request,
        committed=CheckpointCommitted(request.id, 300, "/fsx/m/step-300.json", "emergency"),
    )
    plan = decide(job(plan.status), t, Observed(pods, nodes, all_nodes=A), at(3))
    assert plan.status["phase"] == "Restarting"
    assert plan.status["restarts"]["total"] == 0  # growing back costs no budget
    assert ("Ready", "Resized") in reasons(plan)
    assert len(plan.deletes) == 2

    plan = decide(job(plan.status), t, Observed([], {}, all_nodes=A), at(5))
    assert b.calls[-1] == (3, "/fsx/m/step-300.json", Placement(zone="us-west-2a"))
    assert b.sizes[-1] is None
    assert plan.status["size"] == {"current": 4, "desired": 4}
    assert len([o for o in plan.creates if o["kind"] == "Pod"]) == 4


# --- the spec and the builders --------------------------------------------------------------------

SPEC = {
    "image": "train:1",
    "command": ["python", "train.py"],
    "nodes": 4,
    "minNodes": 2,
    "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
}


def test_min_nodes_above_nodes_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidSpec) as err:
        TrainingJobSpec.parse({**SPEC, "minNodes": 5})
    assert err.value.field == "spec.minNodes"
    assert "between 1 and spec.nodes" in err.value.message


def test_a_short_attempt_is_built_with_its_own_world_size_and_the_specs_hash() -> None:
    r = resolve(TrainingJobSpec.parse(SPEC))
    short = r.with_nodes(2)
    assert short.spec_hash == r.spec_hash  # the operator resized it; the spec is the same
    objs = build_attempt(JobRef("j", "ns", "uid"), short, 3)
    pods = [o for o in objs if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == ["j-3-0", "j-3-1"]
    env = {e["name"]: e.get("value") for e in pods[1]["spec"]["containers"][0]["env"]}
    assert env["WORLD_SIZE"] == "16" and env["NNODES"] == "2"
    assert "--nnodes=2" in pods[1]["spec"]["containers"][0]["command"]
    role = next(o for o in objs if o["kind"] == "Role")
    assert any(rule.get("resourceNames") == ["j-3-0", "j-3-1"] for rule in role["rules"])
