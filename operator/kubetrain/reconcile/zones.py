"""Where an attempt's gang goes: the zone (and, for spot-then-on-demand, the capacity type) with
free room for the whole gang, counted from the nodes the operator knows and the pods on them.

Why the operator chooses instead of the scheduler: with only a zone podAffinity, rank 0 may land
in any zone, and the rest of the gang must follow it there even when that zone has no room; the
attempt then waits out startupTimeoutSeconds beside idle nodes in another zone. Counting free
allocatable per zone first and pinning a zone with room for every rank avoids that, and keeps a
resumed gang next to its data when it can.

What is counted: each node's allocatable (cpu, memory, pods, GPUs, NeuronDevices, EFA) minus the
requests of the kubetrain pods bound to it, and a pod's worth for every pod of another gang that is
pinned to the zone and not bound yet, where it may go to one of the nodes counted (its
nodeSelector matches, it tolerates the taints): gangs restarting at the same moment would
otherwise all pick the same free nodes. Pods of other workloads are not in the operator's
watch; on nodes they share with training gangs, the scheduler still has the last word.

The same count gates each attempt (issue 11, level 1): its pods are created with a scheduling
gate and released only when one zone has room for the whole gang (`Admission.release`), so a
gang that does not fit holds no node. Room the operator cannot count is released at once: no
known node matches (scaling from zero), or the matching nodes come from a provisioner such as
Karpenter, which adds nodes only for pods it sees pending (it ignores gated pods).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from kubetrain.build import Placement
from kubetrain.reconcile.observe import NodeView, Toleration, Usage, tolerates
from kubetrain.reconcile.plan import PlacementNeeds


def selects(node: NodeView, selector: Iterable[tuple[str, str]]) -> bool:
    """The node has every label of the nodeSelector."""
    labels = dict(node.labels)
    return all(labels.get(key) == value for key, value in selector)


def matches(node: NodeView, needs: PlacementNeeds) -> bool:
    """A node of the kind the gang asks for (instance type, capacity type, the pods' own
    nodeSelector, the user's zone), whatever its state."""
    return (
        node.zone is not None
        and (needs.instance_type is None or node.instance_type == needs.instance_type)
        and (not needs.capacity_types or node.capacity_type in needs.capacity_types)
        and (needs.zone is None or node.zone == needs.zone)
        and selects(node, needs.node_selector)
    )


def fits(node: NodeView, needs: PlacementNeeds, avoid: Collection[str]) -> bool:
    """A node of the kind the gang asks for that is accepting new pods."""
    return (
        node.ready
        and not node.unschedulable
        and not node.blocked
        and not node.interruption_taints
        and node.name not in avoid
        and matches(node, needs)
    )


def slots(node: NodeView, used: Mapping[str, int], per_pod: Mapping[str, int]) -> int:
    """How many more pods of the gang fit on `node` now, given what our pods there hold (1 when
    the node reports nothing)."""
    if not node.allocatable or not per_pod:
        return 1
    free = dict(node.allocatable)
    for resource, amount in used.items():
        free[resource] = free.get(resource, 0) - amount
    counts = [free.get(r, 0) // amount for r, amount in per_pod.items() if amount > 0]
    return max(0, min(counts)) if counts else 1


Room = Mapping[tuple[str | None, str], int]  # (capacity type, zone) -> pods of the gang that fit


def room(
    nodes: Iterable[NodeView],
    needs: PlacementNeeds,
    avoid: Collection[str] = (),
    usage: Usage | None = None,
) -> dict[tuple[str | None, str], int]:
    """Pods of the gang that fit now, per (capacity type, zone); empty when no known node fits."""
    per_pod = dict(needs.per_pod)
    usage = usage or Usage()
    out: dict[tuple[str | None, str], int] = defaultdict(int)
    counted: dict[tuple[str | None, str], list[NodeView]] = defaultdict(list)
    for node in nodes:
        if fits(node, needs, avoid):
            key = (node.capacity_type, str(node.zone))
            out[key] += slots(node, usage.used.get(node.name, {}), per_pod)
            counted[key].append(node)
    # Pods of other gangs pinned to a zone and waiting for the scheduler (not gated) take room
    # there, on the nodes they may go to: not on nodes of another instance type, pool or name, nor
    # behind a taint they do not tolerate (gangs pinned each to its own tainted node waited for
    # all the others to bind first).
    for (zone, selector, tolerations), count in usage.waiting.items():
        for key in [k for k in out if k[1] == zone]:
            if any(may_take(node, selector, tolerations) for node in counted[key]):
                out[key] = max(0, out[key] - count)
    return dict(out)


def may_take(
    node: NodeView, selector: Iterable[tuple[str, str]], tolerations: Iterable[Toleration]
) -> bool:
    """A pod with this nodeSelector and these tolerations may be scheduled onto `node`."""
    return selects(node, selector) and tolerates(tolerations, node.taints)


@dataclass(frozen=True)
class Admission:
    """Whether an attempt of `size` pods may go to the scheduler now (its gates lifted)."""

    fits: bool  # one zone has free room for all `size` pods
    known: bool  # some known node is of the kind the gang asks for
    provisioned: bool  # such nodes come from a provisioner that adds more on demand

    @property
    def release(self) -> bool:
        """Lift the gates now: room for the whole gang, or room that cannot be counted."""
        return self.fits or not self.known or self.provisioned

    @property
    def counted(self) -> bool:
        """Released on counted room: every pod should bind at once (gangBindTimeoutSeconds)."""
        return self.fits and not self.provisioned


def admit(free: Room, nodes: Iterable[NodeView], needs: PlacementNeeds, size: int) -> Admission:
    """`free` is room(...) for the same needs: room per (capacity type, zone) of the kinds asked
    for, in the user's zone when they pinned one."""
    known = provisioned = False
    for node in nodes:
        if matches(node, needs):
            known = True
            if any(key in needs.provisioner_labels for key, _ in node.labels):
                provisioned = True
                break
    return Admission(max(free.values(), default=0) >= size, known, provisioned)


def choose_zone(
    nodes: Iterable[NodeView],
    needs: PlacementNeeds,
    gang_size: int,
    avoid: Collection[str] = (),
    previous: str | None = None,
    usage: Usage | None = None,
) -> Placement | None:
    """The placement of the next attempt, or None to leave the choice to the scheduler.

    Capacity types in the spec's order of preference (spot before on-demand); for each, the
    previous attempt's zone while it has room for the whole gang (data and warm caches are
    there), else the zone with the most room. When no zone has room for the whole gang, the zone
    with the most room (the gang waits there for the rest). None when the user pinned a zone
    (the builder uses theirs) or when no known node fits (e.g. Karpenter scaling from zero: the
    provisioner picks).
    """
    if needs.zone:
        return None
    return place(room(nodes, needs, avoid, usage), needs, gang_size, previous)


def place(
    free: Room, needs: PlacementNeeds, gang_size: int, previous: str | None = None
) -> Placement | None:
    """`choose_zone` over room already counted."""
    if needs.zone or not free:
        return None
    pin_type = len(needs.capacity_types) > 1
    for kind in needs.capacity_types or (None,):
        zones = {z: n for (k, z), n in free.items() if kind is None or k == kind}
        best = _best(zones, gang_size, previous)
        if best is not None and zones[best] >= gang_size:
            return Placement(zone=best, capacity_type=kind if pin_type else None)
    total: dict[str, int] = defaultdict(int)
    for (_, zone), n in free.items():
        total[zone] += n
    best = _best(total, gang_size, previous)
    return Placement(zone=best) if best is not None else None


def most_room(free: Room, needs: PlacementNeeds) -> tuple[Placement, int] | None:
    """The (capacity type, zone) with room for the most pods, and how many: where a gang that
    cannot have all its nodes runs on fewer. Capacity types in the spec's order break ties."""
    if needs.zone or not free:
        return None
    order: dict[str | None, int] = {kind: i for i, kind in enumerate(needs.capacity_types)}
    (kind, zone), n = min(free.items(), key=lambda kv: (-kv[1], order.get(kv[0][0], 0), kv[0][1]))
    pin_type = len(needs.capacity_types) > 1
    return Placement(zone=zone, capacity_type=kind if pin_type else None), n


def _best(zones: Mapping[str, int], gang_size: int, previous: str | None) -> str | None:
    if not zones:
        return None
    if previous is not None and zones.get(previous, 0) >= gang_size:
        return previous
    return min(zones, key=lambda zone: (-zones[zone], zone))
