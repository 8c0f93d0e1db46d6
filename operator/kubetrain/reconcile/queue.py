"""Kueue admission for TrainingJobs labelled `kueue.x-k8s.io/queue-name` (issue 11, level 2).

Kueue supports job kinds it does not know as "external frameworks": the job's own controller
creates and owns a `Workload` (kueue.x-k8s.io/v1beta2) describing its pods, Kueue reserves quota
and admits it (status.admission, conditions QuotaReserved and Admitted), and the controller starts
the job only then, with the admitted ResourceFlavor's node labels and tolerations on its pods.
When Kueue evicts the Workload (preemption, deactivation), it sets Evicted=True; the controller
stops the job and, once its pods are gone, clears the quota reservation so Kueue can requeue it
(what `jobframework.JobReconciler` does for Kueue's built-in jobs, mirrored here). On completion
the controller marks the Workload Finished, which releases the quota.

kubetrain's part: the gang is stopped like at a spot notice (checkpoint request, commit or
deadline, pods released) and resumes from that checkpoint when admitted again. Everything here is
pure (bodies in, manifests and patches out); `queue_sync` does the API calls.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kubetrain.api.constants import (
    GROUP,
    KIND,
    KUEUE_API_VERSION,
    KUEUE_FINALIZER,
    KUEUE_LABEL_JOB_UID,
    LABEL_JOB,
    LABEL_QUEUE_NAME,
    SOURCE_QUEUE_EVICTION,
    SOURCE_SUSPEND,
    VERSION,
    WORKLOAD_KIND,
    WORKLOAD_POD_SET,
)
from kubetrain.status import REASON_ADMITTED, REASON_NOT_ADMITTED, set_condition

# Kueue's condition types and reasons on a Workload (apis/kueue/v1beta2/workload_types.go).
WL_QUOTA_RESERVED: Final = "QuotaReserved"
WL_ADMITTED: Final = "Admitted"
WL_EVICTED: Final = "Evicted"
WL_REQUEUED: Final = "Requeued"
WL_FINISHED: Final = "Finished"
WL_FINISHED_SUCCEEDED: Final = "Succeeded"
WL_FINISHED_FAILED: Final = "Failed"
# Evictions after which Kueue's job reconciler sets Requeued=True (others: Requeued=False).
_REQUEUED_EVICTIONS: Final = frozenset({"Preempted", "NodeFailures"})
# Kueue's workload names: "<kind>-<job name>" cut to fit, then 5 hex of a hash (workload_names.go).
_NAME_HASH_LENGTH: Final = 5
_NAME_PREFIX_MAX: Final = 253 - _NAME_HASH_LENGTH - 1


def queue_name(job: Mapping[str, Any]) -> str | None:
    """The LocalQueue a job asks for (its label), None for a job Kueue does not manage."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    name = labels.get(LABEL_QUEUE_NAME)
    return str(name) if name else None


def workload_name(job_name: str, job_uid: str) -> str:
    """The Workload's name, as Kueue names those of its own job controllers (so `kubectl get
    workloads` reads the same for every kind), deterministic for retries."""
    digest = hashlib.sha1(f"{KIND}\n{GROUP}\n{job_name}\n{job_uid}".encode()).hexdigest()
    prefix = f"{KIND.lower()}-{job_name}"[:_NAME_PREFIX_MAX]
    return f"{prefix}-{digest[:_NAME_HASH_LENGTH]}"


@dataclass(frozen=True)
class Priority:
    """The pods' PriorityClass and its value (Kueue orders and preempts by the value)."""

    class_name: str
    value: int


def build_workload(
    job: Mapping[str, Any], pod: Mapping[str, Any], nodes: int, priority: Priority | None
) -> dict[str, Any]:
    """The job's Workload: one pod set of `nodes` pods built like the gang's (their real requests,
    node selectors, affinity and tolerations, which Kueue matches against its flavors)."""
    meta = job.get("metadata") or {}
    name, uid = str(meta["name"]), str(meta["uid"])
    spec = copy.deepcopy(dict(pod.get("spec") or {}))
    spec.pop("nodeName", None)
    template: dict[str, Any] = {"spec": spec}
    labels = (pod.get("metadata") or {}).get("labels")
    if labels:
        template["metadata"] = {"labels": dict(labels)}
    wl_spec: dict[str, Any] = {
        "queueName": queue_name(job) or "",
        "podSets": [{"name": WORKLOAD_POD_SET, "count": nodes, "template": template}],
        "active": not bool((job.get("spec") or {}).get("suspend")),
    }
    if priority is not None:
        wl_spec["priorityClassRef"] = {
            "group": "scheduling.k8s.io",
            "kind": "PriorityClass",
            "name": priority.class_name,
        }
        wl_spec["priority"] = priority.value
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": WORKLOAD_KIND,
        "metadata": {
            "name": workload_name(name, uid),
            "namespace": str(meta["namespace"]),
            "labels": {LABEL_JOB: name, KUEUE_LABEL_JOB_UID: uid},
            "finalizers": [KUEUE_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": wl_spec,
    }


# The pod fields Kueue reads to count and place a pod set (the rest of the spec is the job's).
_SHAPE_FIELDS: Final = ("nodeSelector", "affinity", "tolerations", "priorityClassName", "overhead")


def _shape(pod_set: Mapping[str, Any]) -> dict[str, Any]:
    spec = (pod_set.get("template") or {}).get("spec") or {}
    return {
        "count": pod_set.get("count"),
        **{k: spec.get(k) for k in _SHAPE_FIELDS},
        **{
            kind: [
                (c.get("name"), (c.get("resources") or {}).get("requests"))
                for c in spec.get(kind) or []
            ]
            for kind in ("containers", "initContainers")
        },
    }


def outdated(workload: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """The Workload no longer describes the pods the spec builds (nodes, requests, placement were
    edited): Kueue's job controllers delete such a Workload and create a new one, and so do we."""
    have = (workload.get("spec") or {}).get("podSets") or []
    want = (wanted.get("spec") or {}).get("podSets") or []
    return [_shape(p) for p in have] != [_shape(p) for p in want]


@dataclass(frozen=True)
class Flavor:
    """What an admitted ResourceFlavor adds to the pods: node labels and tolerations."""

    name: str
    node_labels: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Mapping[str, Any], ...] = ()


def flavor_names(workload: Mapping[str, Any]) -> list[str]:
    """The ResourceFlavors of the admission's pod set (one per resource; usually one in all)."""
    admission = (workload.get("status") or {}).get("admission") or {}
    names: list[str] = []
    for psa in admission.get("podSetAssignments") or []:
        if psa.get("name") != WORKLOAD_POD_SET:
            continue
        for flavor in (psa.get("flavors") or {}).values():
            if flavor and str(flavor) not in names:
                names.append(str(flavor))
    return names


def flavor_view(body: Mapping[str, Any]) -> Flavor:
    spec = body.get("spec") or {}
    return Flavor(
        name=str((body.get("metadata") or {}).get("name", "")),
        node_labels=tuple(
            sorted((str(k), str(v)) for k, v in (spec.get("nodeLabels") or {}).items())
        ),
        tolerations=tuple(dict(t) for t in spec.get("tolerations") or []),
    )


def _condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def _true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    cond = _condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"


@dataclass(frozen=True)
class QueueState:
    """The job's Workload as Kueue left it, in the terms `decide` needs."""

    queue: str
    workload: str  # its name
    admitted: bool = False  # Admitted=True (quota reserved and every admission check ready)
    evicted: str | None = None  # Evicted=True: "<reason>: <message>"
    eviction_reason: str | None = None
    quota_reserved: bool = False
    finished: bool = False
    active: bool = True
    queue_name: str = ""  # the Workload's spec.queueName (the label may have changed since)
    cluster_queue: str | None = None
    flavors: tuple[Flavor, ...] = ()
    waiting: str = ""  # why it is not admitted yet (QuotaReserved=False's message)
    conditions: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    generation: int = 0
    resource_version: str = ""
    finalizers: tuple[str, ...] = ()
    deleting: bool = False  # the Workload is being deleted (its job went, or it was replaced)

    @property
    def runs(self) -> bool:
        """Pods may run: admitted and not (being) evicted, and the Workload is not going."""
        return self.admitted and self.evicted is None and not self.finished and not self.deleting


def queue_state(
    queue: str, workload: Mapping[str, Any], flavors: Sequence[Flavor] = ()
) -> QueueState:
    meta = workload.get("metadata") or {}
    status = workload.get("status") or {}
    conditions = tuple(status.get("conditions") or [])
    evicted = _condition(conditions, WL_EVICTED)
    evicted_true = evicted is not None and evicted.get("status") == "True"
    reserved = _condition(conditions, WL_QUOTA_RESERVED)
    waiting = (
        str((reserved or {}).get("message") or "")
        if not _true(conditions, WL_QUOTA_RESERVED)
        else ""
    )
    return QueueState(
        queue=queue,
        workload=str(meta.get("name", "")),
        admitted=_true(conditions, WL_ADMITTED),
        evicted=(
            f"{evicted.get('reason')}: {evicted.get('message')}"
            if evicted is not None and evicted_true
            else None
        ),
        eviction_reason=str(evicted.get("reason"))
        if evicted is not None and evicted_true
        else None,
        quota_reserved=_true(conditions, WL_QUOTA_RESERVED),
        finished=_true(conditions, WL_FINISHED),
        active=bool((workload.get("spec") or {}).get("active", True)),
        queue_name=str((workload.get("spec") or {}).get("queueName") or ""),
        cluster_queue=((status.get("admission") or {}).get("clusterQueue")) or None,
        flavors=tuple(flavors),
        waiting=waiting,
        conditions=conditions,
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
        finalizers=tuple(str(f) for f in meta.get("finalizers") or []),
        deleting=bool(meta.get("deletionTimestamp")),
    )


# --- what decide asks -------------------------------------------------------------------------------


def stop_source(state: QueueState | None, suspend: bool) -> str | None:
    """Why a running gang must stop after a checkpoint: the user suspended it, or Kueue took its
    admission away (eviction, preemption). None: nothing asks it to stop."""
    if suspend:
        return SOURCE_SUSPEND
    if state is not None and not state.runs:
        return SOURCE_QUEUE_EVICTION
    return None


def admission(state: QueueState) -> tuple[bool, str, str]:
    """The job's Admitted condition: (status, reason, message)."""
    if state.runs:
        flavors = ", ".join(f.name for f in state.flavors) or "no flavor"
        return (
            True,
            REASON_ADMITTED,
            f"Workload {state.workload} admitted by ClusterQueue {state.cluster_queue} "
            f"(flavor {flavors})",
        )
    if state.evicted is not None:
        return False, REASON_NOT_ADMITTED, f"Workload {state.workload} evicted ({state.evicted})"
    return False, REASON_NOT_ADMITTED, waiting_message(state)


def waiting_message(state: QueueState) -> str:
    why = f": {state.waiting}" if state.waiting else ""
    return (
        f"waiting for Kueue to admit Workload {state.workload} from LocalQueue "
        f"{state.queue}{why}; no pod is created before that"
    )


def apply_flavor(
    manifests: Sequence[dict[str, Any]], flavors: Sequence[Flavor]
) -> list[dict[str, Any]]:
    """The admitted flavors' node labels and tolerations on every pod of the attempt (what Kueue's
    own job controllers do when they start a job: podset.Merge)."""
    labels = {k: v for f in flavors for k, v in f.node_labels}
    tolerations: list[dict[str, Any]] = []
    for t in (dict(t) for f in flavors for t in f.tolerations):
        if t not in tolerations:
            tolerations.append(t)
    if not labels and not tolerations:
        return list(manifests)
    out = []
    for obj in manifests:
        if obj.get("kind") != "Pod":
            out.append(obj)
            continue
        pod = copy.deepcopy(obj)
        spec = pod.setdefault("spec", {})
        if labels:
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **labels}
        if tolerations:
            have = list(spec.get("tolerations") or [])
            spec["tolerations"] = have + [t for t in tolerations if t not in have]
        out.append(pod)
    return out


# --- what the job controller owes Kueue -------------------------------------------------------------


def status_update(
    state: QueueState, phase: str | None, pods_left: int, now: str
) -> dict[str, Any] | None:
    """The Workload status change due now, if any (a merge patch of `status`).

    - The job finished and its pods are gone: Finished=True (Kueue releases the quota).
    - Kueue evicted it and the gang's pods are gone: Requeued, QuotaReserved=False, Admitted=False,
      no admission (jobframework's "clear the workload's admission"): Kueue queues it again.
    """
    if pods_left:
        return None
    conditions: list[dict[str, Any]] = [dict(c) for c in state.conditions]
    generation = state.generation or None
    if phase in ("Succeeded", "Failed"):
        if state.finished:
            return None
        reason = WL_FINISHED_SUCCEEDED if phase == "Succeeded" else WL_FINISHED_FAILED
        conditions = set_condition(
            conditions,
            WL_FINISHED,
            True,
            reason,
            f"TrainingJob {phase.lower()}",
            now=now,
            observed_generation=generation,
        )
        return {"conditions": conditions}
    if state.evicted is None or not state.quota_reserved:
        return None
    message = state.evicted
    conditions = set_condition(
        conditions,
        WL_REQUEUED,
        state.eviction_reason in _REQUEUED_EVICTIONS,
        str(state.eviction_reason),
        message,
        now=now,
        observed_generation=generation,
    )
    conditions = set_condition(
        conditions,
        WL_QUOTA_RESERVED,
        False,
        "Pending",
        message,
        now=now,
        observed_generation=generation,
    )
    if _true(conditions, WL_ADMITTED):
        conditions = set_condition(
            conditions,
            WL_ADMITTED,
            False,
            "NoReservation",
            "The workload has no reservation",
            now=now,
            observed_generation=generation,
        )
    return {"conditions": conditions, "admission": None}


def release(state: QueueState, pods_left: int) -> dict[str, Any] | None:
    """The metadata patch that lets a finished or deleted Workload go (its finalizer off) once the
    job's pods are gone: what Kueue's job controllers do (workload.RemoveFinalizer)."""
    if pods_left or KUEUE_FINALIZER not in state.finalizers:
        return None
    if not (state.finished or state.deleting):
        return None
    return {
        "resourceVersion": state.resource_version,
        "finalizers": [f for f in state.finalizers if f != KUEUE_FINALIZER],
    }


def spec_update(state: QueueState, suspend: bool) -> dict[str, Any] | None:
    """`spec.active` follows `spec.suspend` (a suspended job holds no quota and is not queued), and
    `spec.queueName` the job's label while no quota is reserved (as Kueue's job controllers do)."""
    update: dict[str, Any] = {}
    if state.active != (not suspend):
        update["active"] = not suspend
    if state.queue_name != state.queue and not state.quota_reserved:
        update["queueName"] = state.queue
    return update or None
