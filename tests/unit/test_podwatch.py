"""The operator's own pod watch, pure parts: the typed decode sees what the whole-body view sees,
and the index answers by job and by node, and says whom an event concerns."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import json
from typing import Any, cast

import pytest

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_PROGRESS,
    ANNOTATION_RESUMED,
    SCHEDULING_GATE_GANG,
)
from kubetrain.api.models import TrainingJobSpec
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest, Progress, Resumed
from kubetrain.build import JobRef, Placement, build_attempt, resolve
from kubetrain.k8s import Kube, KubeError
from kubetrain.podwatch import Gone, PodWatch, decode_pod
from kubetrain.reconcile.observe import PodView, pod_view
from kubetrain.reconcile.podindex import PodIndex

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def built_pod(rank: int = 0, **spec: Any) -> dict[str, Any]:
    """A worker pod exactly as the operator's builders make it."""
    model = TrainingJobSpec.model_validate(
        {
            "image": "train:1",
            "command": ["python", "train.py"],
            "nodes": 2,
            "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
            "resources": {"cpu": "2", "memory": "4Gi"},
            **spec,
        }
    )
    objs = build_attempt(
        JobRef(name="llm", namespace="ml", uid="00000000-0000-0000-0000-000000000001"),
        resolve(model),
        3,
        placement=Placement(zone="us-west-2a"),
    )
    pods = [o for o in objs if o["kind"] == "Pod"]
    pod = copy.deepcopy(pods[rank])
    pod["metadata"]["uid"] = f"uid-{rank}"
    pod["metadata"]["resourceVersion"] = "42"
    # What the API server adds, which the typed decode must skip without tripping on it.
    pod["metadata"]["managedFields"] = [{"manager": "kubetrain-operator", "fieldsV1": {"f:x": {}}}]
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return pod


def running(pod: dict[str, Any], node: str = "p5-a0") -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["spec"]["nodeName"] = node
    pod["spec"].pop("schedulingGates", None)
    pod["status"] = {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T03:00:00Z"},
        ],
        "containerStatuses": [{"name": "worker", "ready": True, "state": {"running": {}}}],
    }
    return pod


def variants() -> list[dict[str, Any]]:
    base = built_pod()
    gated = copy.deepcopy(base)
    gated["spec"]["schedulingGates"] = [{"name": SCHEDULING_GATE_GANG}, {"name": "other"}]
    unschedulable = copy.deepcopy(base)
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3"}
    ]
    up = running(base)
    annotated = running(base)
    annotated["metadata"]["annotations"].update(
        {
            ANNOTATION_CHECKPOINT_REQUEST: CheckpointRequest("r1", "SpotInterruption").encode(),
            ANNOTATION_CHECKPOINT_COMMITTED: CheckpointCommitted("r1", 120, "s3://m").encode(),
            ANNOTATION_RESUMED: Resumed(100, 119, "s3://m").encode(),
            ANNOTATION_PROGRESS: Progress(step=121, time=NOW).encode(),
            "kubectl.kubernetes.io/last-applied-configuration": "x" * 200_000,
        }
    )
    failed = running(base)
    failed["status"]["phase"] = "Failed"
    failed["status"]["containerStatuses"] = [
        {"name": "sidecar", "state": {"terminated": {"exitCode": 0}}},
        {"name": "worker", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}},
    ]
    evicted = running(base)
    evicted["status"].update(phase="Failed", reason="Evicted")
    disrupted = running(base)
    disrupted["metadata"]["deletionTimestamp"] = "2026-12-01T03:01:00Z"
    disrupted["status"]["conditions"].append(
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}
    )
    init = built_pod(1)
    init["spec"]["initContainers"] = [
        {"name": "fetch", "image": "x", "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}}
    ]
    bare = {"metadata": {"name": "x", "namespace": "ml", "labels": {"app": "other"}}}
    return [base, gated, unschedulable, up, annotated, failed, evicted, disrupted, init, bare]


@pytest.mark.parametrize("body", variants())
def test_the_typed_decode_sees_what_the_whole_body_view_sees(body: dict[str, Any]) -> None:
    assert decode_pod(json.dumps(body).encode()) == pod_view(body)


def test_the_variants_exercise_every_field_of_a_view() -> None:
    """Guards the test above: a field no variant sets would pass it whatever the decode did."""
    views = [v for v in map(pod_view, variants()) if v is not None]
    unset = {
        f.name
        for f in dataclasses.fields(PodView)
        if all(getattr(v, f.name) in (None, (), False) for v in views)
    }
    assert unset == set()
    assert pod_view(variants()[-1]) is None  # not ours


def view(rank: int, **changes: Any) -> PodView:
    body = running(built_pod(rank), node=f"p5-a{rank}")
    return dataclasses.replace(pod_view(body) or pytest.fail("not a worker"), **changes)


def test_the_index_keeps_each_jobs_pods_and_which_jobs_hold_a_node() -> None:
    index = PodIndex()
    first, second = view(0), view(1)
    other = dataclasses.replace(view(0), uid="o", job="other", name="other-0")
    for pod in (first, second, other):
        assert index.apply("ADDED", pod).wake
    assert sorted(p.rank for p in index.pods(("ml", "llm"))) == [0, 1]
    assert index.jobs_on("p5-a0") == {("ml", "llm"), ("ml", "other")}
    moved = dataclasses.replace(second, node="p5-b1")
    index.apply("MODIFIED", moved)
    assert index.jobs_on("p5-a1") == set() and index.jobs_on("p5-b1") == {("ml", "llm")}
    assert index.pods(("ml", "llm")) == [first, moved]
    deleted = index.apply("DELETED", moved)
    assert deleted.wake and deleted.freed
    assert index.pods(("ml", "llm")) == [first] and index.jobs_on("p5-b1") == set()
    assert len(index) == 2


def test_a_progress_heartbeat_alone_updates_the_index_without_waking_the_job() -> None:
    index = PodIndex()
    pod = view(0)
    index.apply("ADDED", pod)
    beat = dataclasses.replace(pod, progress=Progress(step=7, time=NOW))
    change = index.apply("MODIFIED", beat)
    assert not change.wake and not change.freed
    assert index.pods(("ml", "llm")) == [beat]  # the hang check reads it from here
    assert index.apply("MODIFIED", dataclasses.replace(beat, ready=False)).wake


def test_only_the_jobs_held_for_room_are_woken_when_room_comes_free() -> None:
    """A pass that finds no room holds its job (kubetrain.handlers); room coming free wakes the
    held jobs only. Gated pods alone do not: a gang just created behind its gate is woken by its
    own pods, and waking every gated gang at each binding was a storm of passes (issue 14)."""
    index = PodIndex()
    for pod in (view(r, gated=True, node=None, phase="Pending") for r in (0, 1)):
        index.apply("ADDED", pod)
    assert index.waiting_jobs() == []
    index.hold(("ml", "llm"), True)
    index.hold(("ml", "other"), True)
    index.hold(("ml", "other"), False)  # its next pass found room
    assert index.waiting_jobs() == [("ml", "llm")]
    done = index.apply("MODIFIED", view(0, phase="Succeeded"))
    assert done.wake and done.freed


def test_a_held_job_is_woken_by_room_freed_and_a_gated_one_is_not_at_most_each_recount() -> None:
    """Timers, not sleeps, decide the order: the recount due at once runs before a 10 ms sleep
    ends, and one due in a minute does not."""
    woken: list[tuple[str, str]] = []
    watch = PodWatch(cast(Kube, None), PodIndex(), woken.append, recount_seconds=60)
    fresh = dataclasses.replace(view(0), uid="g", job="new", gated=True, node=None)
    watch.index.apply("ADDED", fresh)
    watch.index.hold(("ml", "held"), True)
    pods = [running(built_pod(rank)) for rank in (0, 1)]

    def event(type_: str, pod: dict[str, Any]) -> None:
        watch._on_line(json.dumps({"type": type_, "object": pod}).encode())

    def finish(pod: dict[str, Any]) -> None:
        pod["status"]["phase"] = "Succeeded"
        event("MODIFIED", pod)

    async def scenario() -> None:
        for pod in pods:
            event("ADDED", pod)
        woken.clear()
        finish(pods[0])
        await asyncio.sleep(0.01)
        assert woken == [("ml", "llm"), ("ml", "held")]  # its own job, then the held one
        woken.clear()
        finish(pods[1])
        pending = watch._recount
        event("DELETED", pods[0])  # room again
        await asyncio.sleep(0.01)
        assert woken == [("ml", "llm"), ("ml", "llm")]  # the held job: not again so soon...
        assert pending is not None and watch._recount is pending  # ...but once, for both
        await watch.stop()

    asyncio.run(scenario())


def test_a_pinned_pod_binding_lets_the_gangs_held_back_in_its_zone_count_again() -> None:
    """Another gang's pods pinned to a zone and not bound count against that zone's room (the
    scheduler will place them there). A gang whose only nodes were in that zone waited gated
    for minutes after they bound (bench-scale's notice gangs: 2 minutes): binding frees that
    share of the zone's room, so the gated jobs count again."""
    index = PodIndex()
    pinned = view(
        0, node=None, phase="Pending", selector=(("topology.kubernetes.io/zone", "us-west-2a"),)
    )
    assert index.apply("ADDED", pinned).wake
    assert index.usage.usage([]).waiting == {("us-west-2a", pinned.selector, pinned.tolerations): 1}
    bound = index.apply("MODIFIED", dataclasses.replace(pinned, node="p5-a0"))
    assert bound.freed and index.usage.usage([]).waiting == {}
    running = index.apply(
        "MODIFIED", view(0, selector=(("topology.kubernetes.io/zone", "us-west-2a"),), ready=False)
    )
    assert not running.freed  # nothing waits any more, nothing finished


def test_a_fresh_listing_drops_pods_deleted_meanwhile_in_its_namespace_only() -> None:
    index = PodIndex()
    kept, gone = view(0), view(1)
    elsewhere = dataclasses.replace(view(0), uid="e", namespace="team-b")
    for pod in (kept, gone, elsewhere):
        index.apply("ADDED", pod)
    changed_pod = dataclasses.replace(kept, phase="Failed")
    assert index.replace([changed_pod], namespace="ml") == {("ml", "llm")}
    assert index.pods(("ml", "llm")) == [changed_pod]
    assert index.pods(("team-b", "llm")) == [elsewhere]  # another scope's listing keeps it
    assert index.replace([changed_pod, elsewhere]) == set()  # nothing changed
    assert index.replace([]) == {("ml", "llm"), ("team-b", "llm")}
    assert len(index) == 0 and index.usage.nodes() == []


def test_a_watch_error_event_is_gone_on_410_and_an_api_error_otherwise() -> None:
    watch = PodWatch(cast(Kube, None), PodIndex(), lambda _key: None)
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    with pytest.raises(Gone, match="too old"):
        watch._on_line(json.dumps(expired).encode())
    failed = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "Internal"}}
    with pytest.raises(KubeError, match="HTTP 500 Internal"):
        watch._on_line(json.dumps(failed).encode())
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "9"}}}
    assert watch._on_line(json.dumps(bookmark).encode()) == "9" and len(watch.index) == 0
