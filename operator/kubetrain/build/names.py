"""Deterministic object names and the metadata every child carries.

No random suffixes anywhere: a reconcile that is retried after a crash computes the same names and
finds the objects it already created instead of duplicating them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetrain.api.constants import API_VERSION, KIND, LABEL_JOB

DNS_LABEL_MAX = 63


@dataclass(frozen=True)
class JobRef:
    """The owning TrainingJob: enough for names, namespaces and owner references."""

    name: str
    namespace: str
    uid: str


def pod_name(job: str, attempt: int, rank: int) -> str:
    """`<job>-<attempt>-<rank>`; also the pod's hostname, so it must stay a DNS label.

    The CRD limits job names to 52 characters, which leaves room for attempts below 100000 and
    ranks below 10000 (spec.nodes is at most 4096).
    """
    name = f"{job}-{attempt}-{rank}"
    if len(name) > DNS_LABEL_MAX:
        raise ValueError(f"pod name {name!r} exceeds {DNS_LABEL_MAX} characters; job name too long")
    return name


def service_name(job: str) -> str:
    """The headless Service: stable across attempts (pods resolve as `<pod>.<service>`)."""
    return job


def worker_service_account(job: str) -> str:
    return f"{job}-worker"


def worker_role(job: str, attempt: int) -> str:
    """Role and RoleBinding are per attempt: each lists exactly that attempt's pod names."""
    return f"{job}-{attempt}-worker"


def podgroup_name(job: str, attempt: int) -> str:
    """The attempt's native PodGroup: per attempt, so a new gang never joins an old group's
    quorum (a PodGroup's policy is immutable and its pods reference it by name)."""
    return f"{job}-{attempt}"


def fsx_claim_name(job: str) -> str:
    """PVC created for `storage.fsx.fileSystemId`; one per job, reused by every attempt."""
    return f"{job}-fsx"


def fsx_volume_name(job: JobRef) -> str:
    """Cluster-scoped PV name: namespaced by hand, since two namespaces may hold the same job name."""
    return f"kubetrain-{job.namespace}-{job.name}-fsx"


def owner_reference(job: JobRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    job: JobRef, name: str, labels: dict[str, str] | None = None, *, namespaced: bool = True
) -> dict[str, Any]:
    """Name, namespace, `kubetrain.dev/job` label and the controller owner reference.

    Cluster-scoped objects (the FSx PV) get neither namespace nor owner: Kubernetes garbage
    collection cannot follow a namespaced owner from a cluster-scoped child.
    """
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = job.namespace
    meta["labels"] = {LABEL_JOB: job.name, **(labels or {})}
    if namespaced:
        meta["ownerReferences"] = [owner_reference(job)]
    return meta
