"""Submit a TrainingJob and follow it to Succeeded/Failed: the I/O half of the EKS launcher.

Built on `kubetrain.client` (the same client the `kubetrain` CLI uses): get-or-create under a
deterministic name (a retried task reattaches), the job's timeline logged while waiting, the job
deleted on SIGTERM (the run was terminated) or timeout, and a failure carrying the job's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kubetrain.client import (
    JobView,
    NotFound,
    Rejected,
    TrainingJobClient,
    WaitTimeout,
    default_namespace,
)
from kubetrain_kfp.constants import ANNOTATION_KFP_SPEC_HASH, PHASE_FAILED
from kubetrain_kfp.launcher_spec import Outcome, outcome
from kubetrain_kfp.termination import terminate_with
from kubetrain_kfp.validate import InputError

log = logging.getLogger(__name__)

__all__ = [
    "TrainingJobFailed",
    "client",
    "create_or_attach",
    "custom_objects_api",
    "default_namespace",
    "run",
]


class TrainingJobFailed(RuntimeError):
    """The TrainingJob ended in phase Failed; the message carries its Failed condition."""


def client(kubeconfig: str = "", namespace: str = "") -> TrainingJobClient:
    """A client from `kubeconfig`, else in-cluster config, else $KUBECONFIG/~/.kube."""
    return TrainingJobClient(namespace or None, kubeconfig=kubeconfig or None)


def custom_objects_api(kubeconfig: str = "") -> Any:
    """CustomObjectsApi for the reaper, which lists jobs across a run by label."""
    return client(kubeconfig).custom


def _scoped(tj: TrainingJobClient, manifest: Mapping[str, Any]) -> TrainingJobClient:
    namespace = str(manifest["metadata"].get("namespace") or tj.namespace)
    if namespace == tj.namespace:
        return tj
    return TrainingJobClient(namespace, api_client=tj.api_client)


def create_or_attach(tj: TrainingJobClient, manifest: Mapping[str, Any]) -> JobView:
    """Create the TrainingJob, or return the existing one a previous attempt of this task made."""
    tj = _scoped(tj, manifest)
    meta = manifest["metadata"]
    name = meta["name"]
    want = meta["annotations"][ANNOTATION_KFP_SPEC_HASH]

    def same_task(existing: JobView) -> None:
        annotations = existing.raw.get("metadata", {}).get("annotations") or {}
        have = annotations.get(ANNOTATION_KFP_SPEC_HASH)
        if have != want:
            raise InputError(
                f"TrainingJob {tj.namespace}/{name} already exists with a different spec (hash "
                f"{have} != {want}); it was not started by this task: set 'job_name' to another "
                "name"
            )
        log.info(
            "reattaching to existing TrainingJob %s/%s (phase %s)",
            tj.namespace,
            name,
            existing.phase,
        )

    try:
        return tj.create(manifest, reattach=same_task)
    except Rejected as exc:
        raise InputError(f"the API server rejected TrainingJob {name}: {exc}") from exc


def run(
    tj: TrainingJobClient,
    manifest: Mapping[str, Any],
    *,
    poll_seconds: float,
    timeout_seconds: float = 0,
    export_uri: str = "",
    delete_on_finish: bool = False,
) -> Outcome:
    """Create or reattach, wait for a terminal phase, return the outputs (or raise its failure)."""
    tj = _scoped(tj, manifest)
    name, start = manifest["metadata"]["name"], time.monotonic()

    def log_line(line: str) -> None:
        log.info("TrainingJob %s: %s", name, line)

    # The handler is in place before the create: a SIGTERM right after it still deletes the job.
    with terminate_with(lambda: _delete(tj, name)):
        create_or_attach(tj, manifest)
        try:
            job = tj.wait(
                name,
                timeout=timeout_seconds or None,
                poll=poll_seconds,
                on_change=log_line,
                raise_on_failure=False,
            )
        except NotFound as exc:
            raise TrainingJobFailed(
                f"TrainingJob {tj.namespace}/{name} was deleted while the launcher waited for it"
            ) from exc
        except WaitTimeout as exc:
            _delete(tj, name)
            raise TimeoutError(
                f"TrainingJob {tj.namespace}/{name} did not finish within timeout_seconds="
                f"{timeout_seconds:g}; it was deleted"
            ) from exc
    if delete_on_finish:
        _delete(tj, name)
    if job.phase == PHASE_FAILED:
        raise TrainingJobFailed(
            f"TrainingJob {tj.namespace}/{name} failed: {job.failure_message()}"
        )
    return outcome(job.raw, export_uri=export_uri, watched_seconds=time.monotonic() - start)


def _delete(tj: TrainingJobClient, name: str) -> None:
    if tj.delete(name):
        log.warning("deleted TrainingJob %s/%s", tj.namespace, name)
