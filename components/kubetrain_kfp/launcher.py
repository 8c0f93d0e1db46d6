"""Submit a TrainingJob and follow it to Succeeded/Failed: the I/O half of the EKS launcher.

Get-or-create under a deterministic name (a retried task reattaches), log phase, condition and
interruption changes while waiting, delete the job on SIGTERM (the run was terminated) or timeout,
and fail with the job's own reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubetrain_kfp.constants import (
    ANNOTATION_KFP_SPEC_HASH,
    GROUP,
    PHASE_FAILED,
    PHASE_SUCCEEDED,
    PLURAL,
    VERSION,
)
from kubetrain_kfp.launcher_spec import Outcome, Timeline, failure_message, outcome
from kubetrain_kfp.termination import terminate_with
from kubetrain_kfp.validate import InputError

log = logging.getLogger(__name__)

# Consecutive failed reads of the job before the launcher gives up (a long API outage).
MAX_CONSECUTIVE_ERRORS = 10
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class TrainingJobFailed(RuntimeError):
    """The TrainingJob ended in phase Failed; the message carries its Failed condition."""


def custom_objects_api(kubeconfig: str = "") -> Any:
    """CustomObjectsApi from `kubeconfig`, else in-cluster config, else $KUBECONFIG/~/.kube."""
    from kubernetes import client, config

    if kubeconfig:
        return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.CustomObjectsApi()


def default_namespace(namespace: str = "") -> str:
    if namespace:
        return namespace
    if _SA_NAMESPACE.exists():  # the pipeline pod's own namespace
        return _SA_NAMESPACE.read_text().strip()
    return "default"


def _get(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def create_or_attach(api: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Create the TrainingJob, or return the existing one a previous attempt of this task made."""
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    existing = _get(api, namespace, name)
    if existing is None:
        try:
            created: dict[str, Any] = api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, dict(manifest)
            )
            log.info("created TrainingJob %s/%s", namespace, name)
            return created
        except ApiException as exc:
            if exc.status == 422:
                raise InputError(f"the API server rejected TrainingJob {name}: {exc.body}") from exc
            if exc.status != 409:
                raise
            existing = _get(api, namespace, name)
            if existing is None:
                raise
    want = meta["annotations"][ANNOTATION_KFP_SPEC_HASH]
    have = (existing.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_KFP_SPEC_HASH)
    if have != want:
        raise InputError(
            f"TrainingJob {namespace}/{name} already exists with a different spec (hash {have} != "
            f"{want}); it was not started by this task: set 'job_name' to another name"
        )
    phase = (existing.get("status") or {}).get("phase", "Pending")
    log.info("reattaching to existing TrainingJob %s/%s (phase %s)", namespace, name, phase)
    return existing


def delete(api: Any, namespace: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
        )
        log.warning("deleted TrainingJob %s/%s", namespace, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def run(
    api: Any,
    manifest: Mapping[str, Any],
    *,
    poll_seconds: float,
    timeout_seconds: float = 0,
    export_uri: str = "",
    delete_on_finish: bool = False,
) -> Outcome:
    """Create or reattach, wait for a terminal phase, return the outputs (or raise its failure)."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    timeline, start, errors = Timeline(), time.monotonic(), 0
    # The handler is in place before the create: a SIGTERM right after it still deletes the job.
    with terminate_with(lambda: delete(api, namespace, name)):
        create_or_attach(api, manifest)
        while True:
            try:
                obj = _get(api, namespace, name)
                errors = 0
            except Exception as exc:  # API server restart, network blip: keep following
                errors += 1
                if errors > MAX_CONSECUTIVE_ERRORS:
                    raise
                log.warning("reading TrainingJob %s failed (%d in a row): %s", name, errors, exc)
                time.sleep(poll_seconds)
                continue
            if obj is None:
                raise TrainingJobFailed(
                    f"TrainingJob {namespace}/{name} was deleted while the launcher waited for it"
                )
            for line in timeline.changes(obj):
                log.info("TrainingJob %s: %s", name, line)
            phase = (obj.get("status") or {}).get("phase")
            if phase in (PHASE_SUCCEEDED, PHASE_FAILED):
                break
            if timeout_seconds and time.monotonic() - start > timeout_seconds:
                delete(api, namespace, name)
                raise TimeoutError(
                    f"TrainingJob {namespace}/{name} did not finish within timeout_seconds="
                    f"{timeout_seconds:g}; it was deleted"
                )
            time.sleep(poll_seconds)
    if delete_on_finish:
        delete(api, namespace, name)
    if phase == PHASE_FAILED:
        raise TrainingJobFailed(f"TrainingJob {namespace}/{name} failed: {failure_message(obj)}")
    return outcome(obj, export_uri=export_uri, watched_seconds=time.monotonic() - start)
