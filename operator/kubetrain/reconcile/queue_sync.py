"""The API side of Kueue admission (kubetrain.reconcile.queue is the pure side), called by the loop:
read (and first create) the job's Workload before `decide`, write what the job controller owes
Kueue after `act`. Only for jobs labelled `kueue.x-k8s.io/queue-name`; one GET per pass for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from kubetrain.api.constants import (
    KUEUE_API_VERSION,
    LABEL_QUEUE_NAME,
    RESOURCE_FLAVOR_KIND,
    WORKLOAD_KIND,
)
from kubetrain.k8s import Kube, KubeError
from kubetrain.reconcile import queue
from kubetrain.reconcile.observe import PodView
from kubetrain.reconcile.plan import Plan, Target
from kubetrain.status import rfc3339


async def _priority(kube: Kube, pod: Mapping[str, Any]) -> queue.Priority | None:
    """The pods' PriorityClass and its value, as Kueue's job controllers read it."""
    name = (pod.get("spec") or {}).get("priorityClassName")
    if not name:
        return None
    found = await kube.get_object("scheduling.k8s.io/v1", "PriorityClass", None, str(name))
    if found is None:  # the pods cannot be created either: the API server says so then
        return None
    return queue.Priority(str(name), int(found.get("value") or 0))


async def observe(
    kube: Kube, job: Mapping[str, Any], target: Target, starting: bool
) -> queue.QueueState | None:
    """The job's Workload, created when missing; None for a job Kueue does not queue.

    `starting`: room is counted this pass (an attempt is due, its pods wait gated, or an elastic
    gang runs short), so the admitted flavors' node labels and tolerations are read too (they go
    onto the new pods, and room is counted on the nodes they select).
    """
    name = queue.queue_name(job)
    if name is None:
        return None
    meta = job.get("metadata") or {}
    namespace = str(meta["namespace"])
    wl_name = queue.workload_name(str(meta["name"]), str(meta["uid"]))
    workload = await kube.get_object(KUEUE_API_VERSION, WORKLOAD_KIND, namespace, wl_name)
    pod = (
        target.sample_pod()
        if target.sample_pod is not None
        else next(o for o in target.build(1, None) if o.get("kind") == "Pod")
    )
    if workload is not None and workload.get("metadata", {}).get("deletionTimestamp"):
        return queue.queue_state(name, workload)  # going: not admitted, a new one comes next
    if workload is not None:
        wanted = queue.build_workload(job, pod, target.policy.nodes, None)
        if queue.outdated(workload, wanted):
            await kube.delete_object(
                KUEUE_API_VERSION, WORKLOAD_KIND, namespace, wl_name, workload["metadata"]["uid"]
            )
            return queue.queue_state(name, wanted)  # not admitted: the gang stops meanwhile
    if workload is None:
        workload = queue.build_workload(job, pod, target.policy.nodes, await _priority(kube, pod))
        try:
            await kube.create(workload)
        except KubeError as exc:
            if exc.status != 404:
                raise
            raise KubeError(
                exc.verb,
                exc.path,
                exc.status,
                exc.reason,
                f"the job is labelled {LABEL_QUEUE_NAME}={name} but this cluster serves no "
                f"{KUEUE_API_VERSION} Workloads: install Kueue (v0.17 or newer), or remove the "
                "label to run the job without queueing",
            ) from exc
        return queue.queue_state(name, workload)
    state = queue.queue_state(name, workload)
    update = queue.spec_update(state, target.policy.suspend)
    if update is not None:
        await kube.patch_object(
            KUEUE_API_VERSION, WORKLOAD_KIND, namespace, wl_name, {"spec": update}
        )
    names = queue.flavor_names(workload)
    flavors = []
    for flavor in names:
        body = (
            await kube.get_object(KUEUE_API_VERSION, RESOURCE_FLAVOR_KIND, None, flavor)
            if starting and state.runs
            else None
        )
        flavors.append(queue.flavor_view(body) if body else queue.Flavor(flavor))
    return queue.queue_state(name, workload, flavors)


async def settle(
    kube: Kube,
    job: Mapping[str, Any],
    state: queue.QueueState,
    plan: Plan,
    pods: Iterable[PodView],
    now: dt.datetime | None = None,
) -> None:
    """Tell Kueue what the pass left: the job finished (Finished), or an evicted gang's pods are
    gone (admission cleared, so Kueue requeues it). Conditional on the Workload's
    resourceVersion: a Workload Kueue changed meanwhile is looked at again on the next pass."""
    if plan.creates:
        return
    left = sum(1 for p in pods if not p.finished)
    namespace = str((job.get("metadata") or {})["namespace"])
    released = queue.release(state, left)
    if released is not None:
        await kube.patch_object(
            KUEUE_API_VERSION, WORKLOAD_KIND, namespace, state.workload, {"metadata": released}
        )
        return
    phase = plan.status.get("phase")
    update = queue.status_update(
        state, str(phase) if phase else None, left, rfc3339(now or dt.datetime.now(dt.UTC))
    )
    if update is None:
        return
    await kube.patch_object(
        KUEUE_API_VERSION,
        WORKLOAD_KIND,
        namespace,
        state.workload,
        {"metadata": {"resourceVersion": state.resource_version}, "status": update},
        subresource="status",
    )


async def release_deleted(kube: Kube, job: Mapping[str, Any]) -> None:
    """The job is being deleted: its Workload goes with it (owner reference), without waiting for
    an operator pass (there is none after this), as Kueue's controllers do for a deleted job."""
    if queue.queue_name(job) is None:
        return
    meta = job.get("metadata") or {}
    namespace = str(meta["namespace"])
    wl_name = queue.workload_name(str(meta["name"]), str(meta["uid"]))
    workload = await kube.get_object(KUEUE_API_VERSION, WORKLOAD_KIND, namespace, wl_name)
    if workload is None:
        return
    state = queue.queue_state(str(queue.queue_name(job)), workload)
    released = queue.release(dataclasses.replace(state, deleting=True), 0)
    if released is not None:
        await kube.patch_object(
            KUEUE_API_VERSION, WORKLOAD_KIND, namespace, wl_name, {"metadata": released}
        )
