"""Carry out a Plan through the API door, in the order that keeps every crash point safe.

Creates first (deterministic names: a retry finds them; what a pod needs to exist when it is
admitted or scheduled at once, then the pods with the rest at once: one request at a time made a
gang of 8 twelve round trips), then checkpoint requests (all pods at once: the seconds of a spot notice are
the budget), then the status write (the decision is recorded before anything is torn down, so a
failure is never counted twice), then the release of a gated gang (all pods at once; a pass that
finds some still gated releases them again), then deletes (all at once), then
Events (only for transitions that were actually written). A request written before a crash that
lost the status write is recomputed with the same id, so the pods see it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from kubetrain import metrics
from kubetrain.build import superseded_podgroups
from kubetrain.k8s import Kube, KubeError
from kubetrain.reconcile.plan import Plan
from kubetrain.status import status_patch

T = TypeVar("T")


# Created together with the pods, not before them: nothing about a pod's admission or scheduling
# waits for them. The worker's RoleBinding is first used by the worker process itself, after its
# pod was scheduled, bound and started (and its pod watch retries a 403); the headless Service's
# DNS names follow the pods whenever it comes. Under load one wave less is a round trip less per
# gang (issue 14). Everything else goes first: the ServiceAccount (admission requires it), the
# PodGroup (the scheduler requires it), volumes, config, and the Role, which the RoleBinding's
# create looks up for the RBAC escalation check (sent together, the binding's create can run
# first and fail 404 with the Role's name: "rolebindings ... not found").
WITH_THE_PODS = frozenset({"Pod", "RoleBinding", "Service"})


def _create_waves(creates: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The plan's creates in two waves: what the pods need to exist first, then the pods with
    the rest. Within a wave nothing depends on anything else."""
    first = [obj for obj in creates if obj.get("kind") not in WITH_THE_PODS]
    pods = [obj for obj in creates if obj.get("kind") in WITH_THE_PODS]
    return [wave for wave in (first, pods) if wave]


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run the calls at once; the first failure is raised after every call has finished, so no
    request is left running behind the pass that made it (the next pass sees all their effects)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def act(
    kube: Kube,
    job: Mapping[str, Any],
    plan: Plan,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> str | None:
    """Returns the job's resourceVersion after the status write (None when the plan wrote no
    status)."""
    meta = job.get("metadata") or {}
    stored: str | None = None
    namespace, name = str(meta["namespace"]), str(meta["name"])
    for wave in _create_waves(plan.creates):
        created = await _all(kube.create(obj) for obj in wave)
        for obj, new in zip(wave, created, strict=True):
            if new:
                logger.debug("created %s %s", obj.get("kind"), obj["metadata"]["name"])
    for selector in superseded_podgroups(plan.creates):
        try:  # earlier attempts' groups; the job's owner reference collects them all anyway
            await kube.delete_podgroups(namespace, selector)
        except KubeError as exc:
            logger.warning("could not delete the PodGroups of earlier attempts: %s", exc)
    if plan.annotates:
        written = await asyncio.gather(
            *(kube.annotate_pod(namespace, a.name, a.annotations) for a in plan.annotates)
        )
        for annotate, ok in zip(plan.annotates, written, strict=True):
            logger.info(
                "checkpoint request on pod %s%s", annotate.name, "" if ok else " (pod gone)"
            )
    if plan.status_changed:
        stored = await kube.patch_job_status(
            namespace, name, status_patch(job.get("status") or {}, plan.status)
        )
    metrics.record_status(job, plan.status if plan.status_changed else None)
    if plan.patches:
        await _all(kube.patch_pod(namespace, p.name, p.patch) for p in plan.patches)
        logger.info("released the gang's scheduling gates on %d pods", len(plan.patches))
    deleted = await _all(
        kube.delete_pod(namespace, d.name, d.uid, force=d.force, grace=d.grace_seconds)
        for d in plan.deletes
    )
    for delete, gone in zip(plan.deletes, deleted, strict=True):
        if gone:
            how = " (forced)" if delete.force else ""
            if delete.grace_seconds is not None and not delete.force:
                how = f" (grace {delete.grace_seconds}s)"
            logger.info("deleted pod %s%s", delete.name, how)
    if plan.status_changed:
        for event in plan.events:
            log = logger.warning if event.warning else logger.info
            log("%s=%s %s: %s", event.type, event.status, event.reason, event.message)
            try:
                await kube.post_event(
                    job, reason=event.reason, message=event.message, warning=event.warning
                )
            except KubeError as exc:  # an Event is never worth failing the reconcile for
                logger.warning("could not post event %s: %s", event.reason, exc)
    if plan.delete_job:
        logger.info("ttlSecondsAfterFinished passed: deleting the job")
        await kube.delete_job(namespace, name, str(meta.get("uid", "")))
    return stored
