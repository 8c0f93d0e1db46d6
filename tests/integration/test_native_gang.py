"""Native gang scheduling (issue 11 level 3) on a control plane that serves it: the operator finds
the PodGroup API at startup, gives each attempt a PodGroup, and the real kube-scheduler binds the
gang all or none.

These tests run on a second local cluster started with KUBETRAIN_CLUSTER_GANG=native (the
`native_gang_cluster` fixture); overriding `cluster` here points the shared `namespace`, `crd` and
`operator` fixtures at it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import urllib.request
from typing import Any

import pytest
from kopf.testing import KopfRunner
from operator_harness import apply, condition, dump, job_manifest, running_pods, status

from cluster import Cluster
from kubetrain.api.constants import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    PODGROUP_API_VERSION,
    PODGROUP_PLURAL,
    GangScheduling,
)
from kubetrain.k8s import Kube
from kubetrain.reconcile.gang import detect_gang_scheduling
from pod_watch import PodWatch
from support import wait_for

pytestmark = pytest.mark.cluster

ZONE = "us-west-2a"
P5_IN_ZONE = ["p5-spot-a0", "p5-spot-a1", "p5-spot-a2", "p5-spot-a3"]


@pytest.fixture(scope="module")
def cluster(native_gang_cluster: Cluster) -> Cluster:
    return native_gang_cluster


class BindingWatch(PodWatch):
    """Every (pod, nodeName, scheduling gates) a job's pods were ever seen with: a pod bound even
    for a moment is in it."""

    def __init__(self, cluster: Cluster, namespace: str, job: str) -> None:
        super().__init__(cluster, namespace, f"{LABEL_JOB}={job}", name="binding-watch")
        self.seen: list[tuple[str, str | None, list[str]]] = []  # (pod, nodeName, gates)

    def on_event(self, kind: str, pod: Any) -> None:
        gates = [g.name for g in pod.spec.scheduling_gates or []]
        self.seen.append((pod.metadata.name, pod.spec.node_name, gates))

    def bound(self) -> dict[str, str]:
        with self.lock:
            return {pod: node for pod, node, _ in self.seen if node}

    def pods(self) -> set[str]:
        with self.lock:
            return {pod for pod, _, _ in self.seen}

    def gated(self) -> set[str]:
        with self.lock:
            return {pod for pod, _, gates in self.seen if gates}


@pytest.fixture
def p5_in_zone_but_one(cluster: Cluster) -> str:
    """Room for 3 p5 pods in the zone: the fourth node is cordoned (restored after the test)."""
    cluster.cordon(P5_IN_ZONE[-1])
    return P5_IN_ZONE[-1]


def podgroups(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(PODGROUP_PLURAL, "-n", namespace)["items"]
    return sorted(items, key=lambda g: g["metadata"]["name"])


def unschedulable_message(pod: dict[str, Any]) -> str:
    for c in pod["status"].get("conditions") or []:
        if c["type"] == "PodScheduled" and c["status"] == "False":
            return str(c.get("message") or "")
    return ""


def test_cluster_serves_podgroups_and_the_scheduler_runs_the_gang_plugin(
    cluster: Cluster,
) -> None:
    resources = json.loads(cluster.kubectl("get", "--raw", f"/apis/{PODGROUP_API_VERSION}").stdout)
    assert PODGROUP_PLURAL in {r["name"] for r in resources["resources"]}
    ports = dict(p.split("=") for p in (cluster.run_dir / "ports").read_text().split())
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # self-signed, loopback
    url = f"https://127.0.0.1:{ports['scheduler']}/configz"
    with urllib.request.urlopen(url, context=insecure, timeout=10) as response:
        config = json.load(response)["componentconfig"]
    [profile] = [p for p in config["profiles"] if p["schedulerName"] == "default-scheduler"]
    assert "GangScheduling" in {p["name"] for p in profile["plugins"]["multiPoint"]["enabled"]}
    kube = Kube(cluster.credentials())
    mode, why = asyncio.run(detect_gang_scheduling(kube))
    assert mode is GangScheduling.NATIVE and PODGROUP_API_VERSION in why


def test_a_gang_with_room_for_3_of_4_binds_no_pod_until_the_fourth_node_comes(
    cluster: Cluster, namespace: str, operator: KopfRunner, p5_in_zone_but_one: str
) -> None:
    with BindingWatch(cluster, namespace, "quad") as watch:
        apply(cluster, namespace, job_manifest("quad", nodes=4, capacity={"zone": ZONE}))
        # The scheduler has looked at the whole gang and refused it as a group: one pod says why,
        # the others that they wait for their group.
        try:
            pending = wait_for(
                lambda: (
                    items
                    if len(items := cluster.get("pods", "-n", namespace)["items"]) == 4
                    and all(unschedulable_message(p) for p in items)
                    and any("pod group is unschedulable" in unschedulable_message(p) for p in items)
                    else None
                ),
                timeout=60,
                what="4 pods the scheduler holds back as one group",
            )
            group_state = wait_for(
                lambda: condition(podgroups(cluster, namespace)[0]["status"], "PodGroupScheduled"),
                timeout=30,
                what="the PodGroup's scheduling condition",
            )
        except AssertionError:
            print(dump(cluster, namespace))
            raise
        assert group_state["status"] == "False" and group_state["reason"] == "Unschedulable"
        [group] = podgroups(cluster, namespace)
        assert group["metadata"]["name"] == "quad-1"
        assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 4}}
        owner = group["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "TrainingJob" and owner["name"] == "quad"
        assert {p["spec"]["schedulingGroup"]["podGroupName"] for p in pending} == {"quad-1"}
        # What the user sees while the gang waits: the count of pods the scheduler has judged
        # grows to the whole gang (a count alone is written at most once a second).
        ready = condition(
            wait_for(
                lambda: (
                    st
                    if "4/4 pods cannot be scheduled"
                    in condition(st := status(cluster, namespace, "quad"), "Ready").get(
                        "message", ""
                    )
                    else None
                ),
                timeout=30,
                what="Ready=False Unschedulable for 4/4 pods",
            ),
            "Ready",
        )
        assert ready["reason"] == "Unschedulable"
        assert watch.bound() == {}, "a pod of a gang that does not fit was bound"

        room = copy.deepcopy(cluster.node_spec(P5_IN_ZONE[0]))
        room["metadata"]["name"] = "p5-spot-a9"
        room["metadata"]["labels"]["kubernetes.io/hostname"] = "p5-spot-a9"
        cluster.add_node(room)
        items = running_pods(cluster, namespace, "quad", attempt=1, n=4)
        names = {p["metadata"]["name"] for p in items}
        assert names == watch.pods()
        bound = wait_for(  # the watch may deliver the last binding after the list shows it
            lambda: b if set(b := watch.bound()) == names else None,
            timeout=30,
            what="the watch to see all 4 bound",
        )
        assert p5_in_zone_but_one not in bound.values() and "p5-spot-a9" in bound.values()
        assert status(cluster, namespace, "quad")["attempt"] == 1, "no startup timeout was waited"
        assert watch.gated() == set(), "native mode needs no kubetrain scheduling gate"
        assert watch.gaps == []


def test_a_restarted_gang_gets_a_new_podgroup_and_the_old_one_goes(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, job_manifest("again", nodes=2))
    first = running_pods(cluster, namespace, "again", attempt=1, n=2)
    assert [g["metadata"]["name"] for g in podgroups(cluster, namespace)] == ["again-1"]
    cluster.set_pod_outcome(namespace, first[0]["metadata"]["name"], "Failed", exit_code=3)
    second = running_pods(cluster, namespace, "again", attempt=2, n=2)
    assert {p["spec"]["schedulingGroup"]["podGroupName"] for p in second} == {"again-2"}
    wait_for(
        lambda: [g["metadata"]["name"] for g in podgroups(cluster, namespace)] == ["again-2"],
        timeout=60,
        what="only attempt 2's PodGroup left",
    )
    [group] = podgroups(cluster, namespace)
    assert group["metadata"]["labels"] == {LABEL_JOB: "again", LABEL_ATTEMPT: "2"}
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
