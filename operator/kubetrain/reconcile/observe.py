"""What the operator remembers about pods and nodes: small frozen views built from watch events.

The operator's indexes store these views (not whole bodies), so memory stays small with thousands
of pods, and `decide` works on plain values it can compare in unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_NODE_SPOT_NOTICE,
    ANNOTATION_PROGRESS,
    ANNOTATION_RESUMED,
    ANNOTATION_SPEC_HASH,
    CAPACITY_TYPE_LABELS,
    INTERRUPTION_TAINTS,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    SCHEDULING_GATE_GANG,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest, Progress, Resumed
from kubetrain.api.quantity import parse_quantity

ZONE_LABEL = "topology.kubernetes.io/zone"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Resources the zone choice counts (what a worker pod requests), in integer units: millicores for
# cpu, bytes for memory, counts for the rest.
COUNTED_RESOURCES = (
    "cpu",
    "memory",
    "pods",
    "nvidia.com/gpu",
    "aws.amazon.com/neuron",
    "vpc.amazonaws.com/efa",
)
# Taints the node lifecycle controller and cloud provider set; no worker pod tolerates them.
BLOCKING_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/uninitialized")
Resources = tuple[tuple[str, int], ...]  # sorted (resource, amount) pairs: hashable, comparable


def resource_amounts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    """{resource: integer amount} for the counted resources in a requests/allocatable map."""
    out: dict[str, int] = {}
    for key, value in (raw or {}).items():
        if key not in COUNTED_RESOURCES:
            continue
        try:
            amount = parse_quantity(str(value))
        except ValueError:
            continue
        out[key] = int(amount * 1000) if key == "cpu" else int(amount)
    return out


Taint = tuple[str, str, str]  # (key, value, effect) of a NoSchedule or NoExecute taint
Toleration = tuple[str, str, str, str]  # (key, operator, value, effect) as the pod spec has it
_SHARED: dict[object, object] = {}  # one copy of each selector and toleration list of the pods
_SHARED_MAX = 4096  # distinct values kept; beyond, each pod keeps its own copy


def _shared(value: Any) -> Any:
    """Thousands of pods of a few gangs carry a few distinct nodeSelectors and tolerations: one
    tuple each, not one per pod."""
    if len(_SHARED) >= _SHARED_MAX:
        return _SHARED.get(value, value)
    return _SHARED.setdefault(value, value)


def tolerates(tolerations: Iterable[Toleration], taints: Iterable[Taint]) -> bool:
    """Every taint tolerated (Kubernetes' matching: an empty key with Exists tolerates any key,
    Exists any value, an empty effect any effect)."""
    return all(
        any(
            ((not key and op == "Exists") or key == t_key)
            and (op == "Exists" or value == t_value)
            and (not effect or effect == t_effect)
            for key, op, value, effect in tolerations
        )
        for t_key, t_value, t_effect in taints
    )


@dataclass(frozen=True, slots=True)  # thousands of them: no __dict__ each
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
    committed: CheckpointCommitted | None  # rank 0's newest commit report
    requested: CheckpointRequest | None  # the checkpoint request on the pod
    resumed: Resumed | None = None  # rank 0 of a resumed attempt: what it restored
    spec_hash: str | None = None  # ANNOTATION_SPEC_HASH: the spec the pod was built from
    requests: Resources = ()  # what the pod holds on its node (zone choice)
    progress: Progress | None = None  # rank 0's newest training step (hang detection)
    # Its nodeSelector (sorted): the zone choice counts a pod not yet bound against the room of
    # the nodes it may take (zone_pin: the zone it names).
    selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()  # which tainted nodes it may take
    gated: bool = False  # SCHEDULING_GATE_GANG still on the pod: waiting for room for the gang

    @property
    def zone_pin(self) -> str | None:
        return next((value for key, value in self.selector if key == ZONE_LABEL), None)

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)  # thousands of them: no __dict__ each
class NodeView:
    name: str
    ready: bool
    unschedulable: bool
    zone: str | None
    interruption_taints: tuple[str, ...]
    instance_type: str | None = None
    capacity_type: str | None = None  # "spot" | "on-demand", from either label dialect
    notice_time: str | None = None  # "time" of the node agent's spot notice (RFC3339), if any
    allocatable: Resources = ()
    labels: tuple[tuple[str, str], ...] = ()  # sorted: the gang's own nodeSelector must match
    # A taint Kubernetes itself keeps new pods off with (not-ready, unreachable, pressure,
    # uninitialized): it lingers for a moment after a node turns Ready, and the room is not free.
    blocked: bool = False
    taints: tuple[Taint, ...] = ()  # NoSchedule / NoExecute: pods without a toleration stay off


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
            # SchedulingGated: not a verdict of the scheduler (it lingers for a moment after the
            # gates are lifted, until the scheduler has looked).
            if c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") != "SchedulingGated"
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
        committed=CheckpointCommitted.decode(annotations.get(ANNOTATION_CHECKPOINT_COMMITTED)),
        requested=CheckpointRequest.decode(annotations.get(ANNOTATION_CHECKPOINT_REQUEST)),
        resumed=Resumed.decode(annotations.get(ANNOTATION_RESUMED)),
        spec_hash=annotations.get(ANNOTATION_SPEC_HASH),
        progress=Progress.decode(annotations.get(ANNOTATION_PROGRESS)),
        selector=_shared(
            tuple(sorted(((body.get("spec") or {}).get("nodeSelector") or {}).items()))
        ),
        tolerations=_shared(
            tuple(
                (
                    str(t.get("key") or ""),
                    str(t.get("operator") or "Equal"),
                    str(t.get("value") or ""),
                    str(t.get("effect") or ""),
                )
                for t in (body.get("spec") or {}).get("tolerations") or []
            )
        ),
        requests=_pod_requests(body.get("spec") or {}),
        gated=any(
            g.get("name") == SCHEDULING_GATE_GANG
            for g in (body.get("spec") or {}).get("schedulingGates") or []
        ),
    )


def _pod_requests(spec: Mapping[str, Any]) -> Resources:
    """Requests the scheduler counts: the sum over containers (init containers: the largest)."""
    total: dict[str, int] = {"pods": 1}
    for c in spec.get("containers") or []:
        for key, amount in resource_amounts((c.get("resources") or {}).get("requests")).items():
            total[key] = total.get(key, 0) + amount
    for c in spec.get("initContainers") or []:
        for key, amount in resource_amounts((c.get("resources") or {}).get("requests")).items():
            total[key] = max(total.get(key, 0), amount)
    return tuple(sorted(total.items()))


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
            for key, mapping in CAPACITY_TYPE_LABELS.items()
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
        allocatable=tuple(
            sorted(resource_amounts((body.get("status") or {}).get("allocatable")).items())
        ),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        blocked=any(
            str(t.get("key", "")).startswith(BLOCKING_TAINT_PREFIXES)
            and t.get("effect") in ("NoSchedule", "NoExecute")
            for t in spec.get("taints") or []
        ),
        taints=tuple(
            sorted(
                (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect")))
                for t in spec.get("taints") or []
                if t.get("effect") in ("NoSchedule", "NoExecute")
            )
        ),
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


# (zone, nodeSelector, tolerations) of an unbound pinned pod: it takes room only on nodes of that
# zone that its nodeSelector matches and whose taints it tolerates
Pin = tuple[str, tuple[tuple[str, str], ...], tuple[Toleration, ...]]


def holds_on(pod: PodView) -> str | None:
    """The node whose room the pod takes: bound and not finished (a deleting pod still holds)."""
    return pod.node if pod.node and not pod.finished else None


def waits_for(pod: PodView) -> Pin | None:
    """The zone a pod not bound yet will take room in, and the nodeSelector and tolerations that
    say on which of its nodes: pinned there, not finished or going, and not gated (a gated pod
    holds nothing, wherever it is pinned)."""
    if pod.node is not None or pod.gated or pod.finished or pod.deleting:
        return None
    zone = pod.zone_pin
    return (zone, pod.selector, pod.tolerations) if zone else None


@dataclass(frozen=True)
class Usage:
    """What kubetrain pods take from the cluster, for the zone choice: the requests of the pods
    each node holds (`holds_on`), and how many pods wait for each pinned zone (`waits_for`)."""

    used: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    waiting: Mapping[Pin, int] = field(default_factory=dict)

    @classmethod
    def of(cls, pods: Iterable[PodView]) -> Usage:
        index = UsageIndex()
        for pod in pods:
            index.move(None, pod)
        return index.usage(index.nodes())


class UsageIndex:
    """`Usage` kept up to date from pod events: O(1) per event, so choosing a zone costs
    O(nodes), not O(pods in the cluster) (issue 14)."""

    def __init__(self) -> None:
        self._views: dict[str, PodView] = {}  # uid -> the pod's latest view
        self._used: dict[str, dict[str, int]] = {}
        self._holders: dict[str, int] = {}  # node -> pods of ours holding room there
        self._waiting: dict[Pin, int] = {}

    def update(self, view: PodView) -> None:
        """A pod's newest view (from the watch)."""
        self.move(self._views.get(view.uid), view)
        self._views[view.uid] = view

    def forget(self, uid: str) -> None:
        """The pod is gone."""
        old = self._views.pop(uid, None)
        if old is not None:
            self.move(old, None)

    def latest(self, uid: str) -> PodView | None:
        return self._views.get(uid)

    def move(self, old: PodView | None, new: PodView | None) -> None:
        """One pod's view changed from `old` to `new` (None: not there before / gone now)."""
        if old is not None:
            self._count(old, -1)
        if new is not None:
            self._count(new, 1)

    def _count(self, pod: PodView, sign: int) -> None:
        node = holds_on(pod)
        if node is not None:
            used = self._used.setdefault(node, {})
            for resource, amount in pod.requests:
                used[resource] = used.get(resource, 0) + sign * amount
            left = self._holders.get(node, 0) + sign
            if left > 0:
                self._holders[node] = left
            else:  # no pod of ours holds anything there
                self._holders.pop(node, None)
                self._used.pop(node, None)
        pin = waits_for(pod)
        if pin is not None:
            waiting = self._waiting.get(pin, 0) + sign
            if waiting > 0:
                self._waiting[pin] = waiting
            else:
                self._waiting.pop(pin, None)

    def nodes(self) -> list[str]:
        return list(self._used)

    def usage(
        self, nodes: Iterable[str], exclude: Iterable[PodView] = (), extra: Iterable[PodView] = ()
    ) -> Usage:
        """A snapshot for `nodes`, without what the pods in `exclude` (the job's own) wait for,
        with what the pods in `extra` (claimed, not in the index yet) wait for."""
        waiting = dict(self._waiting)
        for pod in extra:
            pin = waits_for(pod)
            if pin is not None:
                waiting[pin] = waiting.get(pin, 0) + 1
        for pod in exclude:
            pin = waits_for(pod)
            if pin is not None and pin in waiting:
                waiting[pin] = max(0, waiting[pin] - 1)
        return Usage(
            used={n: dict(self._used[n]) for n in nodes if n in self._used},
            waiting={pin: n for pin, n in waiting.items() if n > 0},
        )
