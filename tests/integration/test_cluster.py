"""The local control plane behaves like a real EKS cluster in the ways kubetrain relies on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from cluster import Cluster
from support import wait_for

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod(
    name: str,
    limits: dict[str, str],
    *,
    tolerations: list[dict[str, str]] | None = None,
    annotations: dict[str, str] | None = None,
    node_name: str | None = None,
) -> str:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "tolerations": tolerations or [],
        "containers": [{"name": "main", "image": "train:1", "resources": {"limits": limits}}],
    }
    if node_name:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node_name}
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }
    return yaml.safe_dump(manifest)


def phase(cluster: Cluster, ns: str, name: str) -> str:
    return str(cluster.get("pod", name, "-n", ns).get("status", {}).get("phase", ""))


def events_for(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def test_api_server_is_healthy_and_versioned(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    nodes = cluster.get("nodes")["items"]
    assert len(nodes) == 16
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert len(ready) == 16


def test_nodes_look_like_eks(cluster: Cluster) -> None:
    p5 = cluster.get("node", "p5-spot-a0")
    labels = p5["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "p5.48xlarge"
    assert labels["karpenter.sh/capacity-type"] == "spot"
    assert labels["topology.kubernetes.io/zone"] == "us-west-2a"
    alloc = p5["status"]["allocatable"]
    assert (alloc["nvidia.com/gpu"], alloc["vpc.amazonaws.com/efa"]) == ("8", "32")
    assert p5["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    ]
    trn = cluster.get("node", "trn1-od-b0")
    assert trn["status"]["allocatable"]["aws.amazon.com/neuron"] == "16"
    assert trn["status"]["allocatable"]["aws.amazon.com/neuroncore"] == "32"
    p4d = cluster.get("node", "p4d-od-a0")["metadata"]["labels"]
    assert p4d["eks.amazonaws.com/capacityType"] == "ON_DEMAND"
    zones = {
        n["metadata"]["labels"]["topology.kubernetes.io/zone"]
        for n in cluster.get("nodes")["items"]
    }
    assert zones == {"us-west-2a", "us-west-2b"}


CEL_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.celtest.kubetrain.dev}
spec:
  group: celtest.kubetrain.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              min: {type: integer}
              max: {type: integer}
            x-kubernetes-validations:
            - rule: self.min <= self.max
              message: "spec.min must not exceed spec.max: lower spec.min or raise spec.max"
"""


def test_crd_cel_rule_rejects_bad_object_with_its_message(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=CEL_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.celtest.kubetrain.dev")

    def widget(name: str, lo: int, hi: int) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "celtest.kubetrain.dev/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"min": lo, "max": hi},
            }
        )

    def apply(doc: str) -> Any:
        return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=doc, check=False)

    # A just-established CRD can take a moment to be served for writes.
    wait_for(lambda: apply(widget("good", 1, 2)).returncode == 0, timeout=30, what="good widget")
    bad = apply(widget("bad", 5, 2))
    assert bad.returncode != 0
    assert "spec.min must not exceed spec.max: lower spec.min or raise spec.max" in bad.stderr


def test_gpu_pod_with_toleration_runs_on_p5(cluster: Cluster, namespace: str) -> None:
    limits = {"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32", "cpu": "8", "memory": "64Gi"}
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=pod("gpu", limits, tolerations=[GPU_TOLERATION])
    )
    wait_for(lambda: phase(cluster, namespace, "gpu") == "Running", timeout=30, what="Running")
    node = cluster.get("pod", "gpu", "-n", namespace)["spec"]["nodeName"]
    labels = cluster.get("node", node)["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "p5.48xlarge"


def test_gpu_pod_without_toleration_is_not_scheduled(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=pod("notol", {"nvidia.com/gpu": "8"})
    )
    reason = wait_for(
        lambda: next(
            (
                e["message"]
                for e in events_for(cluster, namespace, "notol")
                if e["reason"] == "FailedScheduling"
            ),
            None,
        ),
        timeout=30,
        what="FailedScheduling event",
    )
    assert "untolerated taint" in reason
    assert phase(cluster, namespace, "notol") == "Pending"
    assert not cluster.get("pod", "notol", "-n", namespace)["spec"].get("nodeName")


def test_pod_asking_more_gpus_than_any_node_stays_pending(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=pod("huge", {"nvidia.com/gpu": "16"}, tolerations=[GPU_TOLERATION]),
    )
    reason = wait_for(
        lambda: next(
            (
                e["message"]
                for e in events_for(cluster, namespace, "huge")
                if e["reason"] == "FailedScheduling"
            ),
            None,
        ),
        timeout=30,
        what="FailedScheduling event",
    )
    assert "Insufficient nvidia.com/gpu" in reason
    assert phase(cluster, namespace, "huge") == "Pending"


def test_deleting_an_owner_garbage_collects_its_child(cluster: Cluster, namespace: str) -> None:
    owner = json.loads(
        cluster.kubectl("create", "configmap", "owner", "-n", namespace, "-o", "json").stdout
    )
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(child))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: (
            cluster.kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=60,
        what="child garbage-collected",
    )


@pytest.mark.parametrize(
    ("outcome", "exit_code"), [("Failed", 42), ("Failed", 137), ("Succeeded", 0)]
)
def test_pod_told_to_finish_ends_with_chosen_exit_code(
    cluster: Cluster, namespace: str, outcome: str, exit_code: int
) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=pod("worker", {"cpu": "1"}, tolerations=[GPU_TOLERATION]),
    )
    wait_for(lambda: phase(cluster, namespace, "worker") == "Running", timeout=30, what="Running")
    cluster.set_pod_outcome(namespace, "worker", outcome, exit_code=exit_code)
    wait_for(lambda: phase(cluster, namespace, "worker") == outcome, timeout=30, what=outcome)
    state = cluster.get("pod", "worker", "-n", namespace)["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == exit_code


def test_not_ready_node_is_tainted_and_its_pods_evicted(cluster: Cluster, namespace: str) -> None:
    node = "g5-od-b0"
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=pod("victim", {"cpu": "1"}, tolerations=[GPU_TOLERATION], node_name=node),
    )
    wait_for(lambda: phase(cluster, namespace, "victim") == "Running", timeout=30, what="Running")
    cluster.make_node_not_ready(node)

    def tainted() -> bool:
        taints = cluster.get("node", node)["spec"].get("taints", [])
        return any(
            t["key"] == "node.kubernetes.io/not-ready" and t["effect"] == "NoExecute"
            for t in taints
        )

    wait_for(tainted, timeout=30, what="not-ready:NoExecute taint")
    # The apiserver gives pods a 5 s not-ready toleration here (300 s on a real cluster).
    wait_for(
        lambda: (
            cluster.kubectl("get", "pod", "victim", "-n", namespace, check=False).returncode != 0
        ),
        timeout=60,
        what="pod evicted from the NotReady node",
    )


# --- deletion honours the grace period, as a kubelet does --------------------------------------------


def running_pod(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=pod(name, {"cpu": "1"}, tolerations=[GPU_TOLERATION])
    )
    wait_for(lambda: phase(cluster, ns, name) == "Running", timeout=30, what=f"{name} Running")
    return cluster.get("pod", name, "-n", ns)


def test_deleted_pod_runs_until_its_grace_period_ends(cluster: Cluster, namespace: str) -> None:
    running_pod(cluster, namespace, "graceful")
    cluster.kubectl(
        "delete", "pod", "graceful", "-n", namespace, "--grace-period=20", "--wait=false"
    )
    deleting = cluster.get("pod", "graceful", "-n", namespace)
    # The API server dates deletionTimestamp at the end of the grace period.
    deadline = datetime.fromisoformat(deleting["metadata"]["deletionTimestamp"])
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 20

    # Until shortly before the end it stays Running, containers and all, like a kubelet's pod.
    samples = 0
    current = deleting
    while datetime.now(UTC) < deadline.replace(microsecond=0) - timedelta(seconds=3):
        current = cluster.get("pod", "graceful", "-n", namespace)
        assert current["status"]["phase"] == "Running", current["status"]
        assert "running" in current["status"]["containerStatuses"][0]["state"]
        samples += 1
        time.sleep(0.5)
    assert samples >= 10  # it was looked at through most of the 20 s

    # Then its containers are killed (137, as SIGKILL) and it is gone.
    events = cluster.changes_until_deleted(current, timeout=30)
    assert events[-1][0] == "DELETED", [(t, o.status.phase) for t, o in events]
    last = events[-1][1]
    assert last.status.phase == "Failed"
    assert last.status.container_statuses[0].state.terminated.exit_code == 137


def test_pod_whose_workload_exits_during_the_grace_period_goes_at_once(
    cluster: Cluster, namespace: str
) -> None:
    running_pod(cluster, namespace, "quick")
    cluster.kubectl("delete", "pod", "quick", "-n", namespace, "--grace-period=120", "--wait=false")
    deleting = cluster.get("pod", "quick", "-n", namespace)
    deadline = datetime.fromisoformat(deleting["metadata"]["deletionTimestamp"])
    assert deleting["status"]["phase"] == "Running"
    # The workload handles SIGTERM: it saves and exits 83 (what the stand-in kubelet reports).
    cluster.set_pod_outcome(namespace, "quick", "Failed", exit_code=83)
    events = cluster.changes_until_deleted(deleting, timeout=60)
    assert events[-1][0] == "DELETED"
    assert datetime.now(UTC) < deadline  # long before the grace period would have ended
    last = events[-1][1]
    assert last.status.phase == "Failed"
    assert last.status.container_statuses[0].state.terminated.exit_code == 83


def test_force_deletion_removes_a_running_pod_at_once(cluster: Cluster, namespace: str) -> None:
    running_pod(cluster, namespace, "forced")
    cluster.kubectl(
        "delete", "pod", "forced", "-n", namespace, "--grace-period=0", "--force", "--wait=false"
    )
    assert cluster.kubectl("get", "pod", "forced", "-n", namespace, check=False).returncode != 0


def test_a_shorter_second_deletion_ends_the_grace_period_earlier(
    cluster: Cluster, namespace: str
) -> None:
    running_pod(cluster, namespace, "shortened")
    cluster.kubectl(
        "delete", "pod", "shortened", "-n", namespace, "--grace-period=300", "--wait=false"
    )
    deleting = cluster.get("pod", "shortened", "-n", namespace)
    first = deleting["metadata"]["deletionTimestamp"]
    cluster.kubectl(
        "delete", "pod", "shortened", "-n", namespace, "--grace-period=1", "--wait=false"
    )
    events = cluster.changes_until_deleted(deleting, timeout=60)
    assert events[-1][0] == "DELETED"
    assert datetime.now(UTC) < datetime.fromisoformat(first)
    assert events[-1][1].status.container_statuses[0].state.terminated.exit_code == 137
