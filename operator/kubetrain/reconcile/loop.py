"""One reconcile pass for one job: read once, decide in memory, act. Called by the job's daemon.

Pods and nodes come from kopf indexes (O(1) lookups, no listing); the job itself is read fresh
from the API server so the restart counters are never judged on a stale copy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetrain.k8s import Kube
from kubetrain.reconcile.act import act
from kubetrain.reconcile.decide import decide, policy_requeue
from kubetrain.reconcile.observe import NodeView, PodView
from kubetrain.reconcile.plan import JobView, Observed
from kubetrain.reconcile.target import to_target


@dataclass
class JobMemory:
    """What one daemon remembers between passes: pod names of the current attempt it has seen.

    A pod seen and then gone was deleted under us (eviction, PodGC): an interruption. A pod never
    seen is one whose creation was cut short: create it. Lost on operator restart, which only
    means a deleted pod gets recreated once, the safe direction.
    """

    attempt: int = 0
    seen: set[str] = field(default_factory=set)

    def vanished(self, attempt: int, present: Iterable[str]) -> frozenset[str]:
        if attempt != self.attempt:
            self.attempt, self.seen = attempt, set()
        names = set(present)
        gone = frozenset(self.seen - names)
        self.seen |= names
        return gone


async def reconcile_once(
    kube: Kube,
    namespace: str,
    name: str,
    pods: Iterable[PodView],
    node_lookup: Callable[[str], NodeView | None],
    memory: JobMemory,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    now: dt.datetime | None = None,
    all_nodes: Callable[[], Sequence[NodeView]] = tuple,
) -> float | None:
    """Returns seconds until the next pass is due without events, or None when the job is gone.

    `all_nodes` is called only when an attempt is about to start (choosing its zone), so the
    usual pass stays O(pods of the job).
    """
    body = await kube.get_job(namespace, name)
    if body is None:
        return None
    job = JobView.from_body(body)
    pod_list = [p for p in pods if p.namespace == namespace and p.job == name]
    attempt = int(job.status.get("attempt") or 0)
    vanished = memory.vanished(attempt, (p.name for p in pod_list if p.attempt == attempt))
    nodes = {p.node: node_lookup(p.node) for p in pod_list if p.node}
    starting = attempt == 0 or bool(job.status.get("restartAfter"))
    observed = Observed(
        pods=pod_list,
        nodes=nodes,
        vanished=vanished,
        all_nodes=tuple(all_nodes()) if starting else (),
    )
    plan = decide(job, to_target(body), observed, now or dt.datetime.now(dt.UTC))
    await act(kube, body, plan, logger)
    if plan.delete_job:
        return None
    return policy_requeue(plan)
