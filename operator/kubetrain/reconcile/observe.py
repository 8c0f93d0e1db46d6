"""What the operator remembers about pods and nodes: small frozen views built from watch events.

kopf indexes store these views (not whole bodies), so memory stays small with thousands of pods,
and `decide` works on plain values it can compare in unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_NODE_SPOT_NOTICE,
    ANNOTATION_RESUMED,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    TAINT_KARPENTER_DISRUPTED,
    TAINT_KUBETRAIN_REBALANCE,
    TAINT_KUBETRAIN_SPOT_ITN,
    TAINT_NTH_ASG_TERMINATION,
    TAINT_NTH_REBALANCE,
    TAINT_NTH_SCHEDULED_MAINTENANCE,
    TAINT_NTH_SPOT_ITN,
    TAINT_OUT_OF_SERVICE,
)

# Taints that announce the node is going away (issue #4 acts on them; #3 only records them).
INTERRUPTION_TAINTS = frozenset(
    {
        TAINT_NTH_SPOT_ITN,
        TAINT_NTH_REBALANCE,
        TAINT_NTH_ASG_TERMINATION,
        TAINT_NTH_SCHEDULED_MAINTENANCE,
        TAINT_KARPENTER_DISRUPTED,
        TAINT_OUT_OF_SERVICE,
        TAINT_KUBETRAIN_SPOT_ITN,
        TAINT_KUBETRAIN_REBALANCE,
    }
)
ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Capacity type in both label dialects (Karpenter, EKS managed node groups), normalized to
# "spot" | "on-demand" (reserved capacity and Capacity Blocks are not reclaimed like spot).
_CAPACITY_LABELS = {
    "karpenter.sh/capacity-type": {
        "spot": "spot",
        "on-demand": "on-demand",
        "reserved": "on-demand",
    },
    "eks.amazonaws.com/capacityType": {
        "SPOT": "spot",
        "ON_DEMAND": "on-demand",
        "CAPACITY_BLOCK": "on-demand",
    },
}


@dataclass(frozen=True)
class PodView:
    """The facts about one worker pod that reconcile decisions depend on."""

    namespace: str
    name: str
    uid: str
    job: str
    attempt: int
    rank: int
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    node: str | None
    deletion_timestamp: str | None  # set once someone asked to delete the pod
    ready: bool
    exit_code: int | None  # first terminated container's exit code, if any
    disruption: str | None  # DisruptionTarget condition reason, or "Evicted"
    unschedulable: str | None  # PodScheduled=False message
    committed: str | None  # raw ANNOTATION_CHECKPOINT_COMMITTED value
    requested: str | None  # raw ANNOTATION_CHECKPOINT_REQUEST value
    resumed: str | None = None  # raw ANNOTATION_RESUMED value (rank 0 of a resumed attempt)

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class NodeView:
    name: str
    ready: bool
    unschedulable: bool
    zone: str | None
    interruption_taints: tuple[str, ...]
    instance_type: str | None = None
    capacity_type: str | None = None  # "spot" | "on-demand", from either label dialect
    notice_time: str | None = None  # "time" of the node agent's spot notice (RFC3339), if any


def _int(value: object, default: int = -1) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def pod_view(body: Mapping[str, Any]) -> PodView | None:
    """A view of a kubetrain worker pod, or None for pods that lack our labels."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if LABEL_JOB not in labels:
        return None
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    disruption = next(
        (
            str(c.get("reason") or "DisruptionTarget")
            for c in conditions
            if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        ),
        None,
    )
    if disruption is None and status.get("reason") == "Evicted":
        disruption = "Evicted"
    unschedulable = next(
        (
            str(c.get("message") or c.get("reason") or "Unschedulable")
            for c in conditions
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    exit_code = None
    for cs in status.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode") is not None:
            exit_code = _int(terminated["exitCode"])
            if exit_code != 0:
                break
    return PodView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        job=str(labels[LABEL_JOB]),
        attempt=_int(labels.get(LABEL_ATTEMPT)),
        rank=_int(labels.get(LABEL_RANK)),
        phase=str(status.get("phase") or "Pending"),
        node=(body.get("spec") or {}).get("nodeName") or None,
        deletion_timestamp=meta.get("deletionTimestamp"),
        ready=ready,
        exit_code=exit_code,
        disruption=disruption,
        unschedulable=unschedulable,
        committed=annotations.get(ANNOTATION_CHECKPOINT_COMMITTED),
        requested=annotations.get(ANNOTATION_CHECKPOINT_REQUEST),
        resumed=annotations.get(ANNOTATION_RESUMED),
    )


def node_view(body: Mapping[str, Any]) -> NodeView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = tuple(
        sorted(
            {
                str(t.get("key"))
                for t in spec.get("taints") or []
                if t.get("key") in INTERRUPTION_TAINTS
            }
        )
    )
    labels = meta.get("labels") or {}
    capacity = next(
        (
            mapping[str(labels[key])]
            for key, mapping in _CAPACITY_LABELS.items()
            if str(labels.get(key)) in mapping
        ),
        None,
    )
    return NodeView(
        name=str(meta.get("name", "")),
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        zone=labels.get(ZONE_LABEL),
        interruption_taints=taints,
        instance_type=labels.get(INSTANCE_TYPE_LABEL),
        capacity_type=capacity,
        notice_time=_notice_time((meta.get("annotations") or {}).get(ANNOTATION_NODE_SPOT_NOTICE)),
    )


def _notice_time(raw: object) -> str | None:
    """The action time of the node agent's spot notice ({"action": ..., "time": ...}), if any."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    when = value.get("time") if isinstance(value, dict) else None
    return when if isinstance(when, str) and when else None


def parse_json(raw: str | None) -> dict[str, Any] | None:
    """A JSON-object annotation written by a pod, or None when absent or malformed."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_committed(raw: str | None) -> dict[str, Any] | None:
    """Rank 0's checkpoint-committed annotation as a dict, or None when absent or malformed.

    A malformed value is the pod's bug, not a reason to stop reconciling the job.
    """
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "id" in value else None
