"""The shipped examples, applied with kubectl as a user would, run on the matching simulated nodes.

Each example's pods must be exactly what the builders produce for it (the builders are pinned by
the golden files in tests/unit/golden), land on nodes of the requested instance type in one zone,
make the job Running, and end Succeeded once every rank succeeds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import pods, status

from cluster import Cluster
from kubetrain.api.constants import CAPACITY_TYPE_LABELS
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import JobRef, Placement, build_attempt, resolve
from support import wait_for

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
ZONE = "topology.kubernetes.io/zone"

# What the user's cluster must already have for the examples (the README says so too).
PREREQUISITES = """
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: training-high}
value: 100000
description: Training jobs that may preempt batch work.
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: fsx-pv-NAMESPACE}
spec:
  capacity: {storage: 1200Gi}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: NAMESPACE, name: fsx-pvc}
  csi:
    driver: fsx.csi.aws.com
    volumeHandle: fs-0aaaabbbbccccdddd
    volumeAttributes: {dnsname: fs-0aaaabbbbccccdddd.fsx.us-west-2.amazonaws.com, mountname: fsx}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: fsx-pvc, namespace: NAMESPACE}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: fsx-pv-NAMESPACE
  resources: {requests: {storage: 1200Gi}}
"""


@pytest.fixture
def fsx_volume(cluster: Cluster, namespace: str) -> Iterator[None]:
    """The static FSx PV and claim the examples mount (what an EKS admin creates once)."""
    cluster.kubectl("apply", "-f", "-", input=PREREQUISITES.replace("NAMESPACE", namespace))
    yield
    cluster.kubectl("delete", "pv", f"fsx-pv-{namespace}", "--wait=false", check=False)


def comparable(pod: dict[str, Any]) -> dict[str, Any]:
    """The parts of a pod the builders decide, minus what admission and binding add (API token
    volume, default not-ready/unreachable tolerations, topology labels) and the zone pin the
    operator picks per attempt."""
    spec = copy.deepcopy(pod["spec"])
    containers = []
    for c in spec["containers"]:
        mounts = [
            m for m in c.get("volumeMounts", []) if not m["name"].startswith("kube-api-access")
        ]
        containers.append(
            {
                k: c.get(k)
                for k in (
                    "name",
                    "image",
                    "command",
                    "args",
                    "env",
                    "resources",
                    "ports",
                    "securityContext",
                )
            }
            | {"volumeMounts": mounts}
        )
    affinity = copy.deepcopy(spec.get("affinity") or {})
    affinity.pop("podAffinity", None)
    selector = {k: v for k, v in (spec.get("nodeSelector") or {}).items() if k != ZONE}
    return {
        "containers": containers,
        "initContainers": spec.get("initContainers"),
        "volumes": [
            v for v in spec.get("volumes", []) if not v["name"].startswith("kube-api-access")
        ],
        "tolerations": [
            t
            for t in spec.get("tolerations", [])
            if t.get("key")
            not in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
        ],
        "nodeSelector": selector,
        "affinity": affinity,
        "serviceAccountName": spec.get("serviceAccountName"),
        "terminationGracePeriodSeconds": spec.get("terminationGracePeriodSeconds"),
        "hostname": spec.get("hostname"),
        "subdomain": spec.get("subdomain"),
        "priorityClassName": spec.get("priorityClassName"),
        "restartPolicy": spec.get("restartPolicy"),
        # Kubernetes 1.35+ copies the node's topology labels onto a pod when it is bound.
        "labels": {
            k: v
            for k, v in pod["metadata"].get("labels", {}).items()
            if not k.startswith("topology.kubernetes.io/")
        },
    }


@pytest.mark.parametrize(
    ("example", "instance_type", "zone"),
    [
        ("p5-fsdp-spot", "p5.48xlarge", "us-west-2b"),
        ("trn1-neuron", "trn1.32xlarge", None),
        ("g5-single-node", "g5.12xlarge", None),
    ],
)
def test_example_runs_on_matching_nodes_and_succeeds(
    cluster: Cluster,
    namespace: str,
    fsx_volume: None,
    operator: None,
    example: str,
    instance_type: str,
    zone: str | None,
) -> None:
    path = EXAMPLES / f"{example}.yaml"
    doc = yaml.safe_load(path.read_text())
    name, nodes = doc["metadata"]["name"], int(doc["spec"].get("nodes", 1))
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))

    def running() -> list[dict[str, Any]] | None:
        items = pods(cluster, namespace, name, attempt=1)
        ok = len(items) == nodes and all(p["status"].get("phase") == "Running" for p in items)
        return items if ok else None

    live = wait_for(running, timeout=90, what=f"{nodes} pods of {name} Running")

    # Exactly the builders' pods for this job, with the capacity type the operator pinned for
    # a spot-then-on-demand gang (the one of the nodes it found room on).
    job = cluster.get("trainingjob", name, "-n", namespace)
    ref = JobRef(name=name, namespace=namespace, uid=job["metadata"]["uid"])
    placement = None
    if (doc["spec"].get("capacity") or {}).get("type") == "spot-then-on-demand":
        node_labels = cluster.get("node", live[0]["spec"]["nodeName"])["metadata"]["labels"]
        placement = Placement(
            capacity_type=next(
                kinds[node_labels[label]]
                for label, kinds in CAPACITY_TYPE_LABELS.items()
                if node_labels.get(label) in kinds
            )
        )
    spec = resolve(TrainingJobSpec.parse(doc["spec"]))
    built = [o for o in build_attempt(ref, spec, 1, placement=placement) if o["kind"] == "Pod"]
    for got, want in zip(
        [comparable(p) for p in live], [comparable(p) for p in built], strict=True
    ):
        for key in want:
            if key == "containers":
                for gc, wc in zip(got[key], want[key], strict=True):
                    for ck in wc:
                        assert gc[ck] == wc[ck], f"containers[].{ck} differs from the builder's pod"
            assert got[key] == want[key], f"{key} differs from the builder's pod"

    # On the right nodes, all in one zone.
    labels = [cluster.get("node", p["spec"]["nodeName"])["metadata"]["labels"] for p in live]
    assert {lab["node.kubernetes.io/instance-type"] for lab in labels} == {instance_type}
    zones = {lab[ZONE] for lab in labels}
    assert len(zones) == 1 and (zone is None or zones == {zone})
    assert len({p["spec"]["nodeName"] for p in live}) == nodes  # one pod per instance

    wait_for(
        lambda: status(cluster, namespace, name).get("phase") == "Running",
        timeout=30,
        what="job Running",
    )
    st = status(cluster, namespace, name)
    assert st["nodes"] == {"ready": nodes, "total": nodes}

    for p in live:
        cluster.set_pod_outcome(namespace, p["metadata"]["name"], "Succeeded")
    wait_for(
        lambda: status(cluster, namespace, name).get("phase") == "Succeeded",
        timeout=60,
        what="job Succeeded",
    )
    # What `kubectl get tj` shows a user: NAME PHASE READY ATTEMPT RESTARTS CHECKPOINT AGE.
    header, row = cluster.kubectl("get", "tj", name, "-n", namespace).stdout.splitlines()
    assert header.split()[:5] == ["NAME", "PHASE", "READY", "ATTEMPT", "RESTARTS"]
    assert row.split()[:5] == [name, "Succeeded", f"0/{nodes}", "1", "0"]
