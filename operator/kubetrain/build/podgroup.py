"""Native gang scheduling: the attempt's PodGroup and the link from each pod to it.

Where the API server serves `scheduling.k8s.io/v1alpha2` PodGroups and the scheduler runs its
GangScheduling plugin, a PodGroup with `gang.minCount = nodes` makes the scheduler bind the
attempt's pods all or none: a gang that does not fit holds no node while it waits. Each attempt
gets its own group (the policy is immutable, and a pod names its group for life); the groups of
earlier attempts are deleted when the next one is created (`superseded_podgroups`), and the last
goes with the job (owner reference).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubetrain.api.constants import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    PODGROUP_API_VERSION,
    PODGROUP_KIND,
)
from kubetrain.build.names import JobRef, metadata, podgroup_name


def build_podgroup(job: JobRef, attempt: int, nodes: int) -> dict[str, Any]:
    """The attempt's PodGroup: all `nodes` pods are scheduled together or not at all."""
    return {
        "apiVersion": PODGROUP_API_VERSION,
        "kind": PODGROUP_KIND,
        "metadata": metadata(job, podgroup_name(job.name, attempt), {LABEL_ATTEMPT: str(attempt)}),
        "spec": {"schedulingPolicy": {"gang": {"minCount": nodes}}},
    }


def scheduling_group(job: JobRef, attempt: int) -> dict[str, Any]:
    """A worker pod's `spec.schedulingGroup` (immutable on the pod)."""
    return {"podGroupName": podgroup_name(job.name, attempt)}


def superseded_podgroups(creates: Iterable[Mapping[str, Any]]) -> list[str]:
    """Label selectors of the PodGroups that the PodGroups in `creates` replace: the same job's
    groups of every other attempt. The API server keeps a group whose pods still exist until they
    are gone (its PodGroupProtection finalizer), so deleting early is safe."""
    selectors = []
    for obj in creates:
        if obj.get("kind") == PODGROUP_KIND and obj.get("apiVersion") == PODGROUP_API_VERSION:
            labels = obj["metadata"]["labels"]
            selectors.append(
                f"{LABEL_JOB}={labels[LABEL_JOB]},{LABEL_ATTEMPT}!={labels[LABEL_ATTEMPT]}"
            )
    return selectors
