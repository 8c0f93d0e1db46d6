"""Where pods may run: instance type, capacity type (both label dialects), one zone per attempt
and tolerations for the accelerator taints.

Capacity-type labels differ by provisioner: Karpenter writes `karpenter.sh/capacity-type`
(spot | on-demand | reserved), EKS managed node groups `eks.amazonaws.com/capacityType`
(SPOT | ON_DEMAND | CAPACITY_BLOCK). Node selector terms are ORed, so each constraint becomes one
term per dialect. Nothing here tolerates `karpenter.sh/disrupted`: a node Karpenter is draining must
never receive a new gang.

Nodes an interruption came from are not named here: they are tainted, cordoned or gone already, so
no scheduler places a pod there, and a `kubernetes.io/hostname` requirement is one that
provisioners refuse (Karpenter ignores pods that carry one: the resumed gang would never get
nodes). The operator's zone choice steers around them instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetrain.api.constants import (
    CAPACITY_SPOT,
    CAPACITY_TYPE_LABELS,
    LABEL_ATTEMPT,
    LABEL_EKS_CAPACITY_TYPE,
    LABEL_JOB,
    LABEL_KARPENTER_CAPACITY_TYPE,
    SCHEDULING_GATE_GANG,
    SPEC_CAPACITY_TYPES,
)
from kubetrain.build.names import JobRef
from kubetrain.build.resolve import Resolved

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
KARPENTER_CAPACITY = LABEL_KARPENTER_CAPACITY_TYPE
EKS_CAPACITY = LABEL_EKS_CAPACITY_TYPE
GPU_RESOURCE = "nvidia.com/gpu"
NEURON_RESOURCE = "aws.amazon.com/neuron"
EFA_RESOURCE = "vpc.amazonaws.com/efa"


@dataclass(frozen=True)
class Placement:
    """What the operator chose for one attempt: a zone, and (for spot-then-on-demand) which
    capacity type the whole gang uses. None leaves the choice to the spec and the scheduler."""

    zone: str | None = None
    capacity_type: str | None = None  # CAPACITY_SPOT | CAPACITY_ON_DEMAND


def _label_values(label: str, capacity: Collection[str]) -> list[str]:
    return [value for value, kind in CAPACITY_TYPE_LABELS[label].items() if kind in capacity]


def _terms(capacity: Collection[str]) -> list[dict[str, Any]]:
    """One node selector term per label dialect (terms are ORed)."""
    return [
        {
            "matchExpressions": [
                {"key": key, "operator": "In", "values": _label_values(key, capacity)}
            ]
        }
        for key in (KARPENTER_CAPACITY, EKS_CAPACITY)
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
    job: JobRef, r: Resolved, attempt: int, placement: Placement | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    placement = placement or Placement()
    allowed = SPEC_CAPACITY_TYPES.get(r.spec.capacity.type, ())
    if placement.capacity_type in allowed:
        allowed = (str(placement.capacity_type),)
    node: dict[str, Any] = {}
    if allowed:
        node["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": _terms(allowed)
        }
    if len(allowed) > 1 and CAPACITY_SPOT in allowed:  # spot-then-on-demand, type not pinned
        node["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {
                "weight": 100,
                "preference": {
                    "matchExpressions": [
                        {
                            "key": key,
                            "operator": "In",
                            "values": _label_values(key, [CAPACITY_SPOT]),
                        }
                    ]
                },
            }
            for key in (KARPENTER_CAPACITY, EKS_CAPACITY)
        ]
    if node:
        out["nodeAffinity"] = node
    if not (r.spec.capacity.zone or placement.zone):
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


def gated(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The attempt's manifests with the gang's scheduling gate on every pod: the scheduler leaves
    them alone until the operator sees room for the whole gang (release_patch lifts it)."""
    out = []
    for obj in objects:
        obj = dict(obj)
        if obj.get("kind") == "Pod":
            spec = dict(obj.get("spec") or {})
            gates = [
                g
                for g in spec.get("schedulingGates") or []
                if g.get("name") != SCHEDULING_GATE_GANG
            ]
            spec["schedulingGates"] = [*gates, {"name": SCHEDULING_GATE_GANG}]
            obj["spec"] = spec
        out.append(obj)
    return out


def release_patch(pod: Mapping[str, Any], placement: Placement | None) -> dict[str, Any]:
    """JSON merge patch lifting the gang's gate from `pod` (as built, gated, without a zone) and
    pinning the placement chosen at release.

    A gated pod accepts only additions to its scheduling constraints: the zone becomes a new
    nodeSelector key and the capacity type a new expression in each node selector term that
    names a capacity label, next to the spec's own (the terms are ORed, one per label dialect).
    """
    spec = pod.get("spec") or {}
    others = [g for g in spec.get("schedulingGates") or [] if g.get("name") != SCHEDULING_GATE_GANG]
    out: dict[str, Any] = {"schedulingGates": others or None}
    placement = placement or Placement()
    if placement.zone and ZONE not in (spec.get("nodeSelector") or {}):
        out["nodeSelector"] = {ZONE: placement.zone}
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if placement.capacity_type and terms:
        narrowed = [_narrow(term, placement.capacity_type) for term in terms]
        if narrowed != terms:
            out["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        **required,
                        "nodeSelectorTerms": narrowed,
                    }
                }
            }
    return {"spec": out}


def _narrow(term: Mapping[str, Any], capacity_type: str) -> dict[str, Any]:
    exprs = list(term.get("matchExpressions") or [])
    keys = {e.get("key") for e in exprs if e.get("key") in CAPACITY_TYPE_LABELS}
    extra = [
        {"key": key, "operator": "In", "values": _label_values(key, [capacity_type])}
        for key in sorted(str(k) for k in keys)
    ]
    return {**term, "matchExpressions": exprs + extra} if extra else dict(term)
