"""Gang admission by the operator alone (issue 11, level 1), against the real scheduler.

The gang runs on the p4d on-demand pool (a managed node group: fixed nodes, no provisioner), one
node per zone to begin with; tests add nodes to give or take room. A pod watch started before the
job is submitted sees every version of every pod, so "never bound" is a fact, not a sample.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from kopf.testing import KopfRunner
from operator_harness import (
    apply,
    condition,
    dump,
    events,
    job_manifest,
    live_pods,
    reasons,
    status,
    wait_phase,
)

from cluster import Cluster
from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB, SCHEDULING_GATE_GANG
from pod_watch import PodWatch
from support import wait_for

pytestmark = pytest.mark.cluster
P4D = {"kind": "nvidia", "instanceType": "p4d.24xlarge"}
ZONE = "topology.kubernetes.io/zone"


def add_p4d(cluster: Cluster, name: str, zone: str = "a") -> None:
    node = copy.deepcopy(cluster.node_spec(f"p4d-od-{zone}0"))
    node["metadata"]["name"] = name
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    cluster.add_node(node)
    cluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")


class GateWatch(PodWatch):
    """Every version of the job's pods, in order: (event type, name, attempt, node, gated)."""

    def __init__(self, cluster: Cluster, namespace: str, job: str) -> None:
        super().__init__(cluster, namespace, f"{LABEL_JOB}={job}", name="gate-watch")
        self.seen: list[tuple[str, str, int, str | None, bool]] = []
        self.overlaps: list[str] = []  # pods created while another attempt's pods were alive
        self._live: dict[str, int] = {}

    def on_event(self, kind: str, pod: Any) -> None:
        name = pod.metadata.name
        attempt = int(pod.metadata.labels[LABEL_ATTEMPT])
        gates = [g.name for g in pod.spec.scheduling_gates or []]
        self.seen.append((kind, name, attempt, pod.spec.node_name, SCHEDULING_GATE_GANG in gates))
        if kind == "ADDED":
            others = {n for n, a in self._live.items() if a != attempt}
            if others:
                self.overlaps.append(f"{name} created while {sorted(others)} existed")
            self._live[name] = attempt
        elif kind == "DELETED":
            self._live.pop(name, None)

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def bound(self, since: int = 0, until: int | None = None) -> set[str]:
        with self.lock:
            return {name for _, name, _, node, _ in self.seen[since:until] if node}


def ready_message(cluster: Cluster, namespace: str, job: str) -> str:
    cond = condition(status(cluster, namespace, job), "Ready")
    return str(cond.get("message", "")) if cond.get("reason") == "WaitingForCapacity" else ""


def test_gang_without_room_in_one_zone_holds_no_node_until_the_last_node_arrives(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    job = "wide"
    add_p4d(cluster, "p4d-od-a8")  # 2 in us-west-2a, 1 in us-west-2b
    manifest = job_manifest(
        job, nodes=4, accelerator=P4D, capacity={"type": "on-demand"}, startupTimeoutSeconds=30
    )
    with GateWatch(cluster, namespace, job) as watch:
        apply(cluster, namespace, manifest)
        try:
            wait_for(
                lambda: (
                    "2 free in us-west-2a, 1 free in us-west-2b"
                    in ready_message(cluster, namespace, job)
                ),
                timeout=30,
                what="WaitingForCapacity with the free counts",
            )
            gated = live_pods(cluster, namespace, job, attempt=1)
            assert len(gated) == 4
            assert all(
                p["spec"]["schedulingGates"] == [{"name": SCHEDULING_GATE_GANG}] for p in gated
            )
            assert status(cluster, namespace, job)["phase"] == "Pending"

            # More room, still not enough: the status and one more Event say so.
            add_p4d(cluster, "p4d-od-a9")
            want = (
                "needs 4 x p4d.24xlarge (on-demand) in one zone; "
                "3 free in us-west-2a, 1 free in us-west-2b"
            )
            wait_for(
                lambda: want in ready_message(cluster, namespace, job),
                timeout=30,
                what="the new free counts",
            )
            messages = [
                e["message"]
                for e in events(cluster, namespace, job)
                if e["reason"] == "WaitingForCapacity"
            ]
            assert any(want in m for m in messages) and len(messages) >= 2

            # Gated longer than startupTimeoutSeconds: a gated gang holds nothing, so no timeout.
            since = dt.datetime.fromisoformat(
                condition(status(cluster, namespace, job), "Ready")["lastTransitionTime"]
            )
            wait_for(
                lambda: (
                    dt.datetime.now(dt.UTC) - since > dt.timedelta(seconds=35)
                    and ready_message(cluster, namespace, job)
                ),
                timeout=60,
                interval=1,
                what="gated past startupTimeoutSeconds",
            )
            assert "StartupTimeout" not in reasons(cluster, namespace, job)
            before = watch.mark()
            assert watch.bound(until=before) == set()

            add_p4d(cluster, "p4d-od-a7")  # the 4th node in us-west-2a: the gang is released
            st = wait_phase(cluster, namespace, job, "Running", timeout=60)
        except AssertionError:
            print(dump(cluster, namespace))
            raise
    assert st["attempt"] == 1 and st["zone"] == "us-west-2a"
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    running = live_pods(cluster, namespace, job, attempt=1)
    assert {p["spec"]["nodeName"] for p in running} == {
        "p4d-od-a0",
        "p4d-od-a7",
        "p4d-od-a8",
        "p4d-od-a9",
    }
    assert all(p["spec"]["nodeSelector"][ZONE] == "us-west-2a" for p in running)
    assert watch.bound(until=before) == set() and not watch.overlaps and not watch.gaps


def test_released_gang_that_cannot_bind_goes_within_the_bind_timeout_and_runs_later(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    """Something the operator does not watch holds a node it counted as free: three pods bind,
    the fourth cannot, and the attempt goes after gangBindTimeoutSeconds, counted nowhere."""
    job = "squeezed"
    for name in ("p4d-od-a7", "p4d-od-a8", "p4d-od-a9"):
        add_p4d(cluster, name)  # 4 in us-west-2a: room for the gang, as far as kubetrain knows
    squatter = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "squatter"},
        "spec": {
            "nodeName": "p4d-od-a9",
            "containers": [
                {
                    "name": "c",
                    "image": "registry.example/other:1",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "8"},
                        "limits": {"nvidia.com/gpu": "8"},
                    },
                }
            ],
        },
    }
    apply(cluster, namespace, squatter)
    manifest = job_manifest(
        job, nodes=4, accelerator=P4D, capacity={"type": "on-demand"}, gangBindTimeoutSeconds=10
    )
    with GateWatch(cluster, namespace, job) as watch:
        apply(cluster, namespace, manifest)
        try:
            wait_for(
                lambda: "GangBindTimeout" in reasons(cluster, namespace, job),
                timeout=60,
                what="GangBindTimeout",
            )
            message = next(
                e["message"]
                for e in events(cluster, namespace, job)
                if e["reason"] == "GangBindTimeout"
            )
            assert "only 3/4 pods bound" in message and "gangBindTimeoutSeconds=10" in message
            before = watch.mark()  # the squatter is still there: the 4th pod cannot bind yet
            cluster.kubectl(
                "delete", "pod", "squatter", "-n", namespace, "--grace-period=0", "--force"
            )
            st = wait_phase(cluster, namespace, job, "Running", timeout=90)
        except AssertionError:
            print(dump(cluster, namespace))
            raise
    assert st["attempt"] >= 2
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    assert live_pods(cluster, namespace, job, attempt=1) == []
    attempt1 = {f"{job}-1-{r}" for r in range(4)}
    assert len(watch.bound(until=before) & attempt1) == 3
    assert not watch.overlaps and not watch.gaps


def test_two_gangs_submitted_together_into_room_for_one_run_one_after_the_other(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    for name in ("p4d-od-a7", "p4d-od-a8", "p4d-od-a9"):
        add_p4d(cluster, name)  # 4 in us-west-2a, 1 in us-west-2b: room for one gang of 4
    spec = {"nodes": 4, "accelerator": P4D, "capacity": {"type": "on-demand"}}
    with GateWatch(cluster, namespace, "g1") as w1, GateWatch(cluster, namespace, "g2") as w2:
        for job in ("g1", "g2"):
            apply(cluster, namespace, job_manifest(job, **spec))
        try:
            first = wait_for(
                lambda: next(
                    (
                        j
                        for j in ("g1", "g2")
                        if status(cluster, namespace, j).get("phase") == "Running"
                    ),
                    None,
                ),
                timeout=60,
                what="one gang running",
            )
            second = "g2" if first == "g1" else "g1"
            wait_for(
                lambda: (
                    "0 free in us-west-2a, 1 free in us-west-2b"
                    in ready_message(cluster, namespace, second)
                ),
                timeout=30,
                what=f"{second} waiting for capacity",
            )
            waiting = {"g1": w1, "g2": w2}[second]
            assert waiting.bound() == set()
            for p in live_pods(cluster, namespace, first, attempt=1):
                cluster.set_pod_outcome(namespace, p["metadata"]["name"], "Succeeded")
            wait_phase(cluster, namespace, first, "Succeeded")
            st = wait_phase(cluster, namespace, second, "Running", timeout=60)
        except AssertionError:
            print(dump(cluster, namespace))
            raise
    assert st["attempt"] == 1 and st["restarts"]["total"] == 0
    assert "StartupTimeout" not in reasons(cluster, namespace, second)
    assert status(cluster, namespace, first)["attempt"] == 1


def test_release_pins_the_capacity_type_of_a_spot_then_on_demand_gang_by_adding(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    """A gated pod accepts only additions to its scheduling constraints: the API server must
    take the zone and the capacity-type expressions the release adds."""
    job = "either"
    spec = {"nodes": 2, "accelerator": P4D, "capacity": {"type": "spot-then-on-demand"}}
    apply(cluster, namespace, job_manifest(job, **spec))  # 1 p4d per zone: no room for 2
    try:
        wait_for(
            lambda: ready_message(cluster, namespace, job),
            timeout=30,
            what="WaitingForCapacity",
        )
        add_p4d(cluster, "p4d-od-b8", zone="b")
        st = wait_phase(cluster, namespace, job, "Running", timeout=60)
    except AssertionError:
        print(dump(cluster, namespace))
        raise
    assert st["attempt"] == 1 and st["zone"] == "us-west-2b"
    assert "Unschedulable" not in reasons(cluster, namespace, job)
    for p in live_pods(cluster, namespace, job, attempt=1):
        assert p["spec"]["nodeSelector"][ZONE] == "us-west-2b"
        terms = p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {
            "key": "karpenter.sh/capacity-type",
            "operator": "In",
            "values": ["on-demand", "reserved"],
        } in terms[0]["matchExpressions"]
        assert "schedulingGates" not in p["spec"]
