"""Which zone an attempt's gang goes to, chosen from the nodes the operator knows.

Why the operator chooses instead of the scheduler: with only a zone podAffinity, rank 0 may land
in any zone, and the rest of the gang must follow it there even when that zone has no room; the
attempt then waits out startupTimeoutSeconds. Counting fitting nodes per zone first and pinning
the zone with room avoids that, and keeps a resumed gang next to its data when it can.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from kubetrain.reconcile.observe import NodeView
from kubetrain.reconcile.plan import PlacementNeeds


def fits(node: NodeView, needs: PlacementNeeds, avoid: Collection[str]) -> bool:
    """A node that could take one pod of the gang now (capacity left on it is not tracked)."""
    return (
        node.ready
        and not node.unschedulable
        and not node.interruption_taints
        and node.name not in avoid
        and node.zone is not None
        and (needs.instance_type is None or node.instance_type == needs.instance_type)
        and (not needs.capacity_types or node.capacity_type in needs.capacity_types)
    )


def choose_zone(
    nodes: Iterable[NodeView],
    needs: PlacementNeeds,
    gang_size: int,
    avoid: Collection[str] = (),
    previous: str | None = None,
) -> str | None:
    """The zone for the next attempt, or None to leave the choice to the scheduler.

    The previous attempt's zone while it still has `gang_size` fitting nodes (data and warm
    caches are there), else the zone with the most fitting nodes (ties: name order, so the choice
    is deterministic). None when the user pinned a zone (the builder uses theirs) or when no
    known node fits (e.g. Karpenter scaling from zero: the autoscaler picks).
    """
    if needs.zone:
        return None
    counts = Counter(n.zone for n in nodes if fits(n, needs, avoid))
    if not counts:
        return None
    if previous is not None and counts.get(previous, 0) >= gang_size:
        return previous
    return min(counts, key=lambda zone: (-counts[zone], str(zone)))
