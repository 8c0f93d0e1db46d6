"""Elastic gangs (spec.minNodes): the size each attempt runs at, and when to grow back.

A restart (after an interruption, a failure, a hang) first waits up to spec.shrinkAfterSeconds
for room for every node in one zone, as any gang would. When that room does not come but room
for k >= minNodes nodes does, the attempt resumes on k nodes from the checkpoint (the builders set
WORLD_SIZE and the launcher's node count from k; a torch.distributed.checkpoint reshards on
load, a per-rank torch.save refuses with an error that says so). While it runs short, each pass
looks for room for every node again; when it is there, the gang checkpoints and restarts at full
size (a coordinated checkpoint-restart like a spec change, counted against neither budget).

Pure: room comes counted (zones.room), time comes as `now`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubetrain.build import Placement
from kubetrain.reconcile.plan import PlacementNeeds, Policy
from kubetrain.reconcile.zones import Room, most_room, place
from kubetrain.status import rfc3339

# While an elastic gang waits to shrink or runs short, how often it counts room again (node
# events wake only the jobs with pods on the node).
POLL_SECONDS = 15.0


@dataclass(frozen=True)
class Start:
    """How the next attempt starts: `size` pods at `placement`, or not yet (`wait_until`)."""

    size: int
    placement: Placement | None
    wait_until: dt.datetime | None = None
    why: str | None = None  # status.size.reason / the waiting message


def describe(free: Room, needs: PlacementNeeds, nodes: int) -> str:
    """ "needs 4 x p5.48xlarge (spot) in one zone; 2 free in us-west-2a, 1 in us-west-2b"."""
    kind = needs.instance_type or "node"
    types = f" ({' or '.join(needs.capacity_types)})" if needs.capacity_types else ""
    per_zone: dict[str, int] = {}
    for (_, zone), n in free.items():
        per_zone[zone] = max(per_zone.get(zone, 0), n)
    where = ", ".join(f"{n} free in {z}" for z, n in sorted(per_zone.items(), key=lambda i: i[0]))
    return f"needs {nodes} x {kind}{types} in one zone; {where or 'none free'}"


def next_start(
    policy: Policy,
    needs: PlacementNeeds | None,
    free: Room,
    due: dt.datetime | None,
    now: dt.datetime,
    previous_zone: str | None,
) -> Start:
    """The size and placement of the next attempt.

    `due`: when the restart became due (None for the first attempt, which never shrinks: there
    is no checkpoint to reshard and nothing was interrupted).
    """
    nodes = policy.nodes
    full = place(free, needs, nodes, previous_zone) if needs is not None else None
    if policy.min_nodes is None or needs is None or due is None or not free:
        return Start(nodes, full)
    if max(free.values()) >= nodes:
        return Start(nodes, full)
    best = most_room(free, needs)
    if best is None:
        return Start(nodes, full)
    placement, room = best
    short = min(room, nodes)
    if short < policy.min_nodes:
        return Start(
            nodes,
            full,
            why=f"{describe(free, needs, nodes)}: fewer than minNodes={policy.min_nodes}, so the "
            f"gang waits for room for all {nodes}",
        )
    deadline = due + dt.timedelta(seconds=policy.shrink_after_seconds)
    if now < deadline:
        return Start(
            nodes,
            None,
            wait_until=deadline,
            why=f"{describe(free, needs, nodes)}: waiting until {rfc3339(deadline)} "
            f"(shrinkAfterSeconds={policy.shrink_after_seconds}) for room for all {nodes}, then "
            f"resuming on {short} (minNodes={policy.min_nodes})",
        )
    return Start(
        short,
        placement,
        why=f"running on {short} of {nodes} nodes: {describe(free, needs, nodes)}; grows back "
        "when room returns",
    )


def room_to_grow(
    policy: Policy, needs: PlacementNeeds | None, free: Room, size: int, zone: str | None
) -> str | None:
    """Words for the resize when a short gang now has room for every node, else None.

    In its own zone the gang's pods free their nodes when it restarts, so they count as room.
    """
    nodes = policy.nodes
    if size >= nodes or needs is None or not free:
        return None
    for (_, where), n in sorted(free.items(), key=lambda kv: (kv[0][1] != zone, kv[0][1])):
        if n + (size if where == zone else 0) >= nodes:
            return f"room for all {nodes} nodes in {where} again (running on {size})"
    return None


__all__ = ["POLL_SECONDS", "Start", "describe", "next_start", "room_to_grow"]
