"""Sort the ranks of one attempt into outcomes: the single place that says what counts as what.

Budget rules live here because they are the part users argue about: a rank that exits
EXIT_CHECKPOINTED_AND_STOPPED, was disrupted/evicted, was deleted under us, or sits on a node that
is NotReady or gone is an *interruption* (infrastructure, counted against maxInterruptions); any
other failure is the user's (counted against maxRestarts).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from kubetrain.api.constants import (
    EXIT_CHECKPOINTED_AND_STOPPED,
    SOURCE_CHECKPOINTED,
    SOURCE_NODE_DELETED,
    SOURCE_NODE_NOT_READY,
    SOURCE_POD_DELETED,
    SOURCE_POD_DELETION,
    SOURCE_POD_DISRUPTION,
)
from kubetrain.reconcile.observe import NodeView, PodView


class Outcome(enum.Enum):
    MISSING = "missing"  # never created (or created but not yet seen): create it
    PENDING = "pending"  # exists, not yet placed on a node
    STARTING = "starting"  # placed on a node, not running yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the user's failure
    INTERRUPTED = "interrupted"  # infrastructure's fault


@dataclass(frozen=True)
class RankState:
    rank: int
    outcome: Outcome
    pod: PodView | None
    detail: str  # human words for messages: "exited with code 1", "node p5-a0 is NotReady"
    source: str | None = None  # for interruptions: one of SOURCE_*
    node: str | None = None
    pod_name: str = ""  # the rank's pod, also when it is gone


def node_problem(pod: PodView, nodes: Mapping[str, NodeView | None]) -> tuple[str, str] | None:
    """(source, detail) when the pod's node is gone or NotReady, else None."""
    if pod.node is None:
        return None
    view = nodes.get(pod.node)
    if view is None:
        return SOURCE_NODE_DELETED, f"node {pod.node} was deleted"
    if not view.ready:
        return SOURCE_NODE_NOT_READY, f"node {pod.node} is NotReady"
    return None


def classify_rank(
    rank: int,
    pod: PodView | None,
    nodes: Mapping[str, NodeView | None],
    vanished: frozenset[str],
    pod_name: str,
) -> RankState:
    return replace(_classify(rank, pod, nodes, vanished, pod_name), pod_name=pod_name)


def _classify(
    rank: int,
    pod: PodView | None,
    nodes: Mapping[str, NodeView | None],
    vanished: frozenset[str],
    pod_name: str,
) -> RankState:
    if pod is None:
        if pod_name in vanished:
            return RankState(
                rank,
                Outcome.INTERRUPTED,
                None,
                f"pod {pod_name} was deleted",
                SOURCE_POD_DELETED,
            )
        return RankState(rank, Outcome.MISSING, None, f"pod {pod_name} not created yet")
    problem = node_problem(pod, nodes)
    if pod.phase == "Succeeded":
        return RankState(rank, Outcome.SUCCEEDED, pod, "succeeded", node=pod.node)
    if pod.phase == "Failed":
        if pod.exit_code == EXIT_CHECKPOINTED_AND_STOPPED:
            detail = (
                f"pod {pod.name} checkpointed and stopped (exit {EXIT_CHECKPOINTED_AND_STOPPED})"
            )
            return RankState(rank, Outcome.INTERRUPTED, pod, detail, SOURCE_CHECKPOINTED, pod.node)
        if pod.disruption:
            detail = f"pod {pod.name} was disrupted ({pod.disruption})"
            return RankState(
                rank, Outcome.INTERRUPTED, pod, detail, SOURCE_POD_DISRUPTION, pod.node
            )
        if problem:
            return RankState(rank, Outcome.INTERRUPTED, pod, problem[1], problem[0], pod.node)
        code = "unknown" if pod.exit_code is None else str(pod.exit_code)
        detail = f"pod {pod.name} failed with exit code {code}"
        return RankState(rank, Outcome.FAILED, pod, detail, node=pod.node)
    if problem:
        return RankState(rank, Outcome.INTERRUPTED, pod, problem[1], problem[0], pod.node)
    if pod.deleting:
        detail = f"pod {pod.name} is being deleted"
        if pod.disruption:
            detail += f" ({pod.disruption})"
        return RankState(rank, Outcome.INTERRUPTED, pod, detail, SOURCE_POD_DELETION, pod.node)
    if pod.phase == "Running":
        return RankState(rank, Outcome.RUNNING, pod, "running", node=pod.node)
    if pod.node is None:
        why = pod.unschedulable or "waiting for the scheduler"
        return RankState(rank, Outcome.PENDING, pod, why)
    return RankState(rank, Outcome.STARTING, pod, f"starting on {pod.node}", node=pod.node)


def count(states: Sequence[RankState], *outcomes: Outcome) -> int:
    return sum(1 for s in states if s.outcome in outcomes)


def first(states: Sequence[RankState], outcome: Outcome) -> RankState | None:
    return next((s for s in states if s.outcome is outcome), None)
