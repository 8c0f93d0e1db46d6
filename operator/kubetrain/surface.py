"""Errors a reconcile pass cannot handle itself, made visible and bounded.

The reconcile loop (reconcile/) decides from a spec that parsed; what can still go wrong is the
API server refusing what the builders made, or a call failing. Three outcomes, never a silent
5-second retry loop:

- **the API server rejects a child object** (HTTP 400/422: invalid, deterministic for this spec):
  the job ends `Failed` with reason `InvalidSpec` and the server's own message, a Warning Event,
  and no further passes until the spec changes (a new generation);
- **any other error that repeats**: exponential backoff (5 s doubling to 5 min), a
  `ReconcileError` condition (True, with the message) from the second failure in a row, and
  Warning Events rate-limited to the 2nd, 4th, 8th... failure or a new message; the condition
  turns False (reason `Recovered`) on the next pass that succeeds;
- **a spot job without a durable checkpoint location**: a `SpecWarning` condition and one Event.

Kept out of reconcile/ on purpose: it only reads and writes conditions through `k8s.Kube`, after
or instead of a pass, so the loop's decisions stay pure.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kubetrain.api.constants import (
    COND_FAILED,
    COND_READY,
    COND_RECONCILE_ERROR,
    COND_SPEC_WARNING,
    REASON_API_ERROR,
    REASON_INVALID_SPEC,
    REASON_NO_DURABLE_CHECKPOINT,
    REASON_OPERATOR_ERROR,
    REASON_RECOVERED,
)
from kubetrain.k8s import Kube, KubeError
from kubetrain.status import derive_phase, get_condition, rfc3339, set_condition

__all__ = [
    "COND_RECONCILE_ERROR",
    "COND_SPEC_WARNING",
    "ErrorTracker",
    "backoff",
    "on_error",
    "on_success",
    "rejected_this_generation",
]
# Prefix of a Failed/InvalidSpec message written for an API rejection (recognised on later passes).
REJECTED_PREFIX: Final = "the API server rejected"

BACKOFF_BASE_SECONDS: Final = 5.0
BACKOFF_MAX_SECONDS: Final = 300.0
CONDITION_AFTER_FAILURES: Final = 2

Logger = logging.Logger | logging.LoggerAdapter[Any]


def backoff(failures: int) -> float:
    """5, 10, 20, ... seconds, at most 5 minutes, for the n-th failure in a row."""
    return float(min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS))


def is_rejection(exc: BaseException) -> bool:
    """A create the API server refused as invalid: retrying the same object cannot help."""
    return isinstance(exc, KubeError) and exc.verb == "POST" and exc.status in (400, 422)


def rejection_field(body: Mapping[str, Any]) -> str:
    """The spec field a rejected child most likely came from: podTemplate when there is one
    (it is merged last and is the only free-form part), else the spec as a whole."""
    return "spec.podTemplate" if (body.get("spec") or {}).get("podTemplate") else "spec"


def rejected_this_generation(body: Mapping[str, Any]) -> bool:
    """The job ended Failed because the API server rejected a child built from this very spec."""
    status = body.get("status") or {}
    failed = get_condition(status.get("conditions") or [], COND_FAILED)
    generation = (body.get("metadata") or {}).get("generation")
    return bool(
        failed
        and failed.get("status") == "True"
        and failed.get("reason") == REASON_INVALID_SPEC
        and REJECTED_PREFIX in str(failed.get("message", ""))
        and failed.get("observedGeneration") == generation
    )


def spot_without_durable_checkpoint(spec: Mapping[str, Any]) -> bool:
    """Spot capacity, and neither a checkpoint directory on a volume nor an S3 mirror: the first
    reclaim restarts training from step 0 (the CRD already refuses a dir outside every volume)."""
    capacity = (spec.get("capacity") or {}).get("type")
    if capacity not in ("spot", "spot-then-on-demand"):
        return False
    ckpt = spec.get("checkpoint") or {}
    storage = spec.get("storage") or {}
    return not (ckpt.get("dir") or ckpt.get("s3Uri") or storage.get("fsx"))


Wrote = Callable[[str], None]
"""Hears the resourceVersion a status write left (the daemon's kubetrain.reconcile.loop.JobSource)."""

MSG_NO_DURABLE_CHECKPOINT: Final = (
    "spec.checkpoint: a spot job without a durable checkpoint location (spec.checkpoint.dir on "
    "FSx or a mounted volume, or spec.checkpoint.s3Uri) restarts from step 0 after every spot "
    "reclaim: set spec.storage.fsx, spec.checkpoint.dir or spec.checkpoint.s3Uri"
)


@dataclass
class ErrorTracker:
    """One job daemon's run of consecutive failures (lost on operator restart: starts over)."""

    failures: int = 0
    last_message: str = ""
    condition_set: bool = False
    warned_generation: int | None = field(default=None)


async def _set_conditions(
    kube: Kube,
    namespace: str,
    name: str,
    updates: list[tuple[str, bool, str, str]],
    extra: Mapping[str, Any] | None = None,
    wrote: Wrote | None = None,
) -> dict[str, Any] | None:
    """Read the job fresh, set conditions, write status once; the job (before) or None.

    `wrote` hears the resourceVersion the write left: the daemon's passes must not take an
    older view of the job for current, or their next status write drops these conditions
    (a merge patch replaces the whole list)."""
    body = await kube.get_job(namespace, name)
    if body is None:
        return None
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    now = rfc3339(dt.datetime.now(dt.UTC))
    conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
    for type_, value, reason, message in updates:
        conditions = set_condition(
            conditions, type_, value, reason, message, now=now, observed_generation=generation
        )
    patch: dict[str, Any] = {"conditions": conditions, "phase": derive_phase(conditions)}
    patch.update(extra or {})
    version = await kube.patch_job_status(namespace, name, patch)
    if wrote is not None:
        wrote(version)
    return body


async def _event(
    kube: Kube, body: Mapping[str, Any], reason: str, message: str, logger: Logger
) -> None:
    try:
        await kube.post_event(body, reason=reason, message=message, warning=True)
    except KubeError as exc:
        logger.warning("could not post event %s: %s", reason, exc)


async def on_error(
    kube: Kube,
    namespace: str,
    name: str,
    exc: BaseException,
    tracker: ErrorTracker,
    logger: Logger,
    wrote: Wrote | None = None,
) -> float | None:
    """Record a failed pass; return seconds until the next one (None: the job is gone)."""
    tracker.failures += 1
    if is_rejection(exc):
        assert isinstance(exc, KubeError)
        return await _fail_rejected(kube, namespace, name, exc, tracker, logger, wrote)
    message = str(exc) or type(exc).__name__
    reason = REASON_API_ERROR if isinstance(exc, KubeError) else REASON_OPERATOR_ERROR
    delay = backoff(tracker.failures)
    logger.error(
        "reconcile failed (%d in a row), retrying in %.0fs: %s", tracker.failures, delay, message
    )
    if tracker.failures < CONDITION_AFTER_FAILURES:
        tracker.last_message = message
        return delay
    text = f"{message} (failed {tracker.failures} times in a row; next try in {delay:.0f}s)"
    try:
        body = await _set_conditions(
            kube, namespace, name, [(COND_RECONCILE_ERROR, True, reason, text[:2048])], wrote=wrote
        )
    except KubeError as write_error:  # the API server itself may be what fails
        logger.warning("could not record ReconcileError: %s", write_error)
        body = None
    tracker.condition_set = tracker.condition_set or body is not None
    power_of_two = tracker.failures & (tracker.failures - 1) == 0
    if body is not None and (power_of_two or message != tracker.last_message):
        await _event(kube, body, COND_RECONCILE_ERROR, text, logger)
    tracker.last_message = message
    return delay


async def _fail_rejected(
    kube: Kube,
    namespace: str,
    name: str,
    exc: KubeError,
    tracker: ErrorTracker,
    logger: Logger,
    wrote: Wrote | None,
) -> float | None:
    current = await kube.get_job(namespace, name)
    if current is None:
        return None
    field_ = rejection_field(current)
    message = (
        f"{field_}: {REJECTED_PREFIX} an object built from this spec: "
        f"{exc.message or exc}: fix {field_}"
    )[:2048]
    logger.error("%s", message)
    now = rfc3339(dt.datetime.now(dt.UTC))
    status = current.get("status") or {}
    body = await _set_conditions(
        kube,
        namespace,
        name,
        [
            (COND_FAILED, True, REASON_INVALID_SPEC, message),
            (COND_READY, False, REASON_INVALID_SPEC, message),
        ],
        extra={"message": message, "completionTime": status.get("completionTime") or now},
        wrote=wrote,
    )
    if body is not None:
        await _event(kube, body, REASON_INVALID_SPEC, message, logger)
    tracker.failures = 0
    # The caller sees Failed for this generation and waits for a new spec (rejected_this_generation).
    return BACKOFF_MAX_SECONDS


async def on_success(
    kube: Kube,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    tracker: ErrorTracker,
    logger: Logger,
    wrote: Wrote | None = None,
) -> None:
    """After a pass that worked: clear ReconcileError, and warn once about non-durable spot jobs."""
    failures, tracker.failures = tracker.failures, 0
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    updates: list[tuple[str, bool, str, str]] = []
    error = get_condition(conditions, COND_RECONCILE_ERROR)
    if tracker.condition_set or (error and error.get("status") == "True"):
        if failures or (error and error.get("status") == "True"):
            updates.append(
                (COND_RECONCILE_ERROR, False, REASON_RECOVERED, "the last reconcile succeeded")
            )
        tracker.condition_set = False
    generation = (body.get("metadata") or {}).get("generation")
    warn = spot_without_durable_checkpoint(body.get("spec") or {})
    existing = get_condition(conditions, COND_SPEC_WARNING)
    want = "True" if warn else "False"
    post_warning = False
    if tracker.warned_generation != generation and (
        (existing is None and warn) or (existing is not None and existing.get("status") != want)
    ):
        if warn:
            updates.append(
                (COND_SPEC_WARNING, True, REASON_NO_DURABLE_CHECKPOINT, MSG_NO_DURABLE_CHECKPOINT)
            )
            post_warning = True
        else:
            updates.append((COND_SPEC_WARNING, False, "SpecOK", "no spec warnings"))
    tracker.warned_generation = generation
    if not updates:
        return
    try:
        written = await _set_conditions(kube, namespace, name, updates, wrote=wrote)
    except KubeError as exc:
        logger.warning("could not update conditions: %s", exc)
        return
    if written is not None and post_warning:
        await _event(kube, written, REASON_NO_DURABLE_CHECKPOINT, MSG_NO_DURABLE_CHECKPOINT, logger)
