"""Where pods may run: instance type, capacity type (both label dialects), one zone per attempt,
tolerations for the accelerator taints, and nodes to avoid after an interruption.

Capacity-type labels differ by provisioner: Karpenter writes `karpenter.sh/capacity-type`
(spot | on-demand | reserved), EKS managed node groups `eks.amazonaws.com/capacityType`
(SPOT | ON_DEMAND | CAPACITY_BLOCK). Node selector terms are ORed, so each constraint becomes one
term per dialect. Nothing here tolerates `karpenter.sh/disrupted`: a node Karpenter is draining must
never receive a new gang.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB
from kubetrain.build.names import JobRef
from kubetrain.build.resolve import Resolved

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
KARPENTER_CAPACITY = "karpenter.sh/capacity-type"
EKS_CAPACITY = "eks.amazonaws.com/capacityType"
GPU_RESOURCE = "nvidia.com/gpu"
NEURON_RESOURCE = "aws.amazon.com/neuron"
EFA_RESOURCE = "vpc.amazonaws.com/efa"

# (karpenter values, EKS managed node group values). Reserved capacity (ODCR, Capacity Blocks) is
# not interruptible by spot reclaims, so it counts as on-demand.
_SPOT = (["spot"], ["SPOT"])
_ON_DEMAND = (["on-demand", "reserved"], ["ON_DEMAND", "CAPACITY_BLOCK"])


def _terms(
    karpenter: list[str], eks: list[str], avoid: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One node selector term per label dialect (terms are ORed), each with the nodes to avoid.

    Every term gets fresh copies: manifests never share sub-objects, so a caller that mutates one
    term (or one pod) cannot change another.
    """
    return [
        {
            "matchExpressions": [
                {"key": key, "operator": "In", "values": list(values)},
                *copy.deepcopy(avoid),
            ]
        }
        for key, values in ((KARPENTER_CAPACITY, karpenter), (EKS_CAPACITY, eks))
    ]


def node_selector(r: Resolved, zone: str | None = None) -> dict[str, str]:
    """`zone`: the attempt's zone chosen by the operator; spec.capacity.zone wins when set."""
    selector: dict[str, str] = {}
    if r.spec.accelerator.instance_type:
        selector[INSTANCE_TYPE] = r.spec.accelerator.instance_type
    if r.spec.capacity.zone or zone:
        selector[ZONE] = r.spec.capacity.zone or str(zone)
    return selector


def affinity(
    job: JobRef,
    r: Resolved,
    attempt: int,
    avoid_nodes: Sequence[str],
    zone: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    avoid = sorted(set(avoid_nodes))
    not_in = [{"key": HOSTNAME, "operator": "NotIn", "values": avoid}] if avoid else []
    kind = r.spec.capacity.type
    required: list[dict[str, Any]] = []
    preferred: list[dict[str, Any]] = []
    if kind == "spot":
        required = _terms(*_SPOT, not_in)
    elif kind == "on-demand":
        required = _terms(*_ON_DEMAND, not_in)
    elif kind == "spot-then-on-demand":
        required = _terms(_SPOT[0] + _ON_DEMAND[0], _SPOT[1] + _ON_DEMAND[1], not_in)
        preferred = [
            {"weight": 100, "preference": {"matchExpressions": [expr]}}
            for expr in (
                {"key": KARPENTER_CAPACITY, "operator": "In", "values": list(_SPOT[0])},
                {"key": EKS_CAPACITY, "operator": "In", "values": list(_SPOT[1])},
            )
        ]
    elif not_in:
        required = [{"matchExpressions": not_in}]
    node: dict[str, Any] = {}
    if required:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        node["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    if node:
        out["nodeAffinity"] = node
    if not (r.spec.capacity.zone or zone):
        # No zone pinned (the operator knows no node that fits, e.g. Karpenter scaling from zero).
        # The scheduler admits the first pod anywhere (no pod matches yet and it matches itself),
        # then keeps the rest of the attempt in that pod's zone: EFA and FSx do not cross zones.
        out["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchLabels": {LABEL_JOB: job.name, LABEL_ATTEMPT: str(attempt)}
                    },
                    "topologyKey": ZONE,
                }
            ]
        }
    return out


def tolerations(r: Resolved) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kind = r.spec.accelerator.kind
    if kind == "nvidia":
        out.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    elif kind == "neuron":
        out.append({"key": NEURON_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if r.efa_interfaces:
        out.append({"key": EFA_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return out
