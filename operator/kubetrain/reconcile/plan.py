"""Inputs and outputs of the pure `decide` step: frozen values, no client, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetrain.api.constants import LABEL_KARPENTER_NODEPOOL, GangScheduling
from kubetrain.build import Placement
from kubetrain.reconcile.observe import NodeView, PodView, Resources, Usage
from kubetrain.reconcile.queue import QueueState
from kubetrain.status import Transition


class AttemptBuilder(Protocol):
    """(attempt, resume_manifest, placement, size) -> manifests in creation order
    (kubetrain.build.build_attempt); `size`: worker pods when fewer than spec.nodes (elastic)."""

    def __call__(
        self,
        attempt: int,
        resume: str | None,
        placement: Placement | None = None,
        size: int | None = None,
        /,
    ) -> list[dict[str, Any]]: ...


# attempt, rank -> pod name (kubetrain.build.pod_name), so "missing" and "vanished" agree.
PodNamer = Callable[[int, int], str]
# attempt, placement -> the merge patch that lifts the gang's scheduling gate from a pod of the
# attempt and pins the placement chosen at release (kubetrain.build.release_patch).
ReleasePatch = Callable[[int, Placement | None], dict[str, Any]]


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

    @property
    def attempt(self) -> int:
        return int(self.status.get("attempt") or 0)

    def size(self, nodes: int) -> int:
        """Pods of the current attempt: status.size.current of an elastic gang running short,
        else `nodes` (spec.nodes)."""
        current = (self.status.get("size") or {}).get("current")
        return min(int(current), nodes) if current else nodes


@dataclass(frozen=True)
class Policy:
    """The spec fields the reconcile loop itself obeys (the builders handle the rest)."""

    nodes: int
    max_restarts: int = 3
    max_interruptions: int = 20
    backoff_seconds: int = 30
    startup_timeout_seconds: int = 900
    # Released on counted room: every pod bound within this, or the gang is gated again.
    gang_bind_timeout_seconds: int = 60
    suspend: bool = False
    ttl_seconds_after_finished: int | None = None
    # Ranks whose exit 0 ends the job (mpirun: rank 0 only); None = every rank.
    success_ranks: tuple[int, ...] | None = None
    # Deadline of a checkpoint request when the node gave no notice time of its own.
    checkpoint_deadline_seconds: int = 90
    # Hang detection (None: off), and the allowance for an attempt's first step.
    progress_timeout_seconds: int | None = None
    first_progress_timeout_seconds: int = 1800
    # Elastic size (None: always `nodes`): the fewest pods a restart may resume on, and how long it
    # waits for room for all `nodes` first.
    min_nodes: int | None = None
    shrink_after_seconds: int = 120


@dataclass(frozen=True)
class PlacementNeeds:
    """What a node must be for this job's pods, so the operator can pick each attempt's zone.

    `zone` set = the user pinned one (spec.capacity.zone): nothing to choose.
    """

    instance_type: str | None
    capacity_types: tuple[str, ...]  # of "spot", "on-demand", most preferred first; () = any
    zone: str | None = None
    per_pod: Resources = ()  # what one pod of the gang requests (observe.resource_amounts units)
    # The pods' own nodeSelector besides instance type and zone (sorted): only such nodes count.
    node_selector: tuple[tuple[str, str], ...] = ()
    # Label keys of nodes a provisioner adds on demand (config.provisioner_node_labels).
    provisioner_labels: tuple[str, ...] = (LABEL_KARPENTER_NODEPOOL,)


@dataclass(frozen=True)
class Target:
    """A spec that parsed and resolved: what to run and how to build each attempt."""

    policy: Policy
    build: AttemptBuilder
    pod_name: PodNamer
    placement: PlacementNeeds | None = None  # None: the operator never pins a zone
    spec_hash: str = ""  # of the fields that shape the pods (kubetrain.build.spec_hash)
    # Builds rank 0 of attempt 1: the pods' shape (a Kueue Workload's pod set template). Built
    # when asked, not kept: a whole pod per job was a tenth of the operator's heap at 1,000 jobs.
    sample_pod: Callable[[], Mapping[str, Any]] | None = None
    # Gang admission: attempts whose room is short are created gated and released with this
    # patch. None: the default release (only the gate goes).
    release: ReleasePatch | None = None
    # Who keeps the gang all-or-nothing (chosen at startup): KUBETRAIN gates the pods and releases
    # them on counted room (above); NATIVE leaves it to the scheduler's PodGroup, no gate.
    gang: GangScheduling = GangScheduling.KUBETRAIN


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
    # Every node the operator knows (for choosing a zone); filled only when an attempt is due.
    all_nodes: Sequence[NodeView] = ()
    # What kubetrain pods hold on those nodes, and other jobs' pods not bound yet but pinned to a
    # zone (they will take room there).
    usage: Usage = field(default_factory=Usage)
    # The job's Kueue Workload (kubetrain.reconcile.queue); None: the job is not queued by Kueue.
    queue: QueueState | None = None


@dataclass(frozen=True)
class PodDelete:
    name: str
    uid: str
    force: bool  # grace period 0: the node is gone/NotReady or the pod is stuck terminating
    # A grace period shorter than the pod's own: the checkpoint request is settled, so nothing
    # the old gang does any more is worth waiting for. None: the pod's own.
    grace_seconds: int | None = None


@dataclass(frozen=True)
class PodAnnotate:
    """Merge `annotations` onto one pod (the checkpoint request on every pod of the gang)."""

    name: str
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class PodPatch:
    """JSON-merge-patch one pod (lifting the gang's scheduling gate)."""

    name: str
    patch: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    """What to do, in order: create, annotate, write status (only if changed), patch, delete,
    events."""

    status: dict[str, Any]
    creates: tuple[dict[str, Any], ...] = ()
    annotates: tuple[PodAnnotate, ...] = ()
    patches: tuple[PodPatch, ...] = ()
    deletes: tuple[PodDelete, ...] = ()
    delete_job: bool = False
    events: tuple[Transition, ...] = ()
    requeue_after: float | None = None
    status_changed: bool = field(default=False)
