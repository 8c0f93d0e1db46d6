"""Inputs and outputs of the pure `decide` step: frozen values, no client, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetrain.reconcile.observe import NodeView, PodView
from kubetrain.status import Transition

# (attempt, resume_manifest, avoid_nodes) -> manifests in creation order (kubetrain.build).
AttemptBuilder = Callable[[int, str | None, Sequence[str]], list[dict[str, Any]]]
# attempt, rank -> pod name (kubetrain.build.pod_name), so "missing" and "vanished" agree.
PodNamer = Callable[[int, int], str]


@dataclass(frozen=True)
class JobView:
    namespace: str
    name: str
    uid: str
    generation: int
    status: Mapping[str, Any]
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            status=dict(body.get("status") or {}),
            deleting=meta.get("deletionTimestamp") is not None,
        )


@dataclass(frozen=True)
class Policy:
    """The spec fields the reconcile loop itself obeys (the builders handle the rest)."""

    nodes: int
    max_restarts: int = 3
    max_interruptions: int = 20
    backoff_seconds: int = 30
    startup_timeout_seconds: int = 900
    suspend: bool = False
    ttl_seconds_after_finished: int | None = None
    # Ranks whose exit 0 ends the job (mpirun: rank 0 only); None = every rank.
    success_ranks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Target:
    """A spec that parsed and resolved: what to run and how to build each attempt."""

    policy: Policy
    build: AttemptBuilder
    pod_name: PodNamer


@dataclass(frozen=True)
class Invalid:
    """A spec that passed the schema but cannot run; `message` names the field and the fix."""

    field: str
    message: str


@dataclass(frozen=True)
class Observed:
    pods: Sequence[PodView]  # every pod labelled with this job, any attempt
    nodes: Mapping[str, NodeView | None]  # for each pod's node: its view, None when gone
    vanished: frozenset[str] = frozenset()  # current-attempt pod names seen before, now gone


@dataclass(frozen=True)
class PodDelete:
    name: str
    uid: str
    force: bool  # grace period 0: the node is gone/NotReady or the pod is stuck terminating


@dataclass(frozen=True)
class Plan:
    """What to do, in order: create, write status (only if changed), delete, post events."""

    status: dict[str, Any]
    creates: tuple[dict[str, Any], ...] = ()
    deletes: tuple[PodDelete, ...] = ()
    delete_job: bool = False
    events: tuple[Transition, ...] = ()
    requeue_after: float | None = None
    status_changed: bool = field(default=False)
