"""Backstop for run termination: stop/delete whatever a pipeline run left running.

The per-task SIGTERM handler covers `kfp.local` and any runtime that forwards the signal to the
component's Python process. A KFP v2 backend may not: the task runs under the KFP launcher and an
`sh -ec` wrapper that do not forward SIGTERM (see reference/kfp-sagemaker.md 1.6). The example
pipelines therefore wrap their steps in `dsl.ExitHandler(cleanup_run(...))`: when the run ends for
any reason, this finds the remote jobs by the run-id tag/label every component sets and stops
those still running. On a run that finished normally it finds nothing to do.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from kubetrain_kfp.constants import (
    GROUP,
    LABEL_KFP_RUN,
    PHASE_FAILED,
    PHASE_SUCCEEDED,
    PLURAL,
    TAG_KFP_RUN,
    VERSION,
)
from kubetrain_kfp.naming import label_value
from kubetrain_kfp.sagemaker_jobs import PROCESSING, TRAINING, TRANSFORM, TUNING, JobKind

log = logging.getLogger(__name__)

# list call, summaries key, ARN key, and the status that means "still running".
_LISTS: dict[str, tuple[JobKind, str, str, str]] = {
    "list_training_jobs": (TRAINING, "TrainingJobSummaries", "TrainingJobArn", "InProgress"),
    "list_processing_jobs": (
        PROCESSING,
        "ProcessingJobSummaries",
        "ProcessingJobArn",
        "InProgress",
    ),
    "list_transform_jobs": (TRANSFORM, "TransformJobSummaries", "TransformJobArn", "InProgress"),
    "list_hyper_parameter_tuning_jobs": (
        TUNING,
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobArn",
        "InProgress",
    ),
}


def _run_tag(client: Any, arn: str) -> str | None:
    tags = client.list_tags(ResourceArn=arn).get("Tags") or []
    return next((t["Value"] for t in tags if t.get("Key") == TAG_KFP_RUN), None)


def reap_sagemaker(client: Any, run_id: str) -> list[str]:
    """Stop every in-progress SageMaker job tagged with this run; returns their names."""
    want, stopped = label_value(run_id), []
    for list_call, (kind, key, arn_key, running) in _LISTS.items():
        kwargs: dict[str, Any] = {"StatusEquals": running}
        while True:
            page = getattr(client, list_call)(**kwargs)
            for summary in page.get(key) or []:
                if _run_tag(client, summary[arn_key]) != want:
                    continue
                name = summary[kind.name_field]
                try:
                    kind.call(client, "stop", **{kind.name_field: name})
                    log.warning(
                        "stopped %s job %s left running by run %s", kind.label, name, run_id
                    )
                    stopped.append(name)
                except ClientError as exc:
                    log.warning("could not stop %s job %s: %s", kind.label, name, exc)
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return stopped


def reap_trainingjobs(api: Any, namespace: str, run_id: str) -> list[str]:
    """Delete this run's TrainingJobs that have not finished; returns their names."""
    selector = f"{LABEL_KFP_RUN}={label_value(run_id)}"
    items = api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=selector
    )["items"]
    deleted = []
    for obj in items:
        if (obj.get("status") or {}).get("phase") in (PHASE_SUCCEEDED, PHASE_FAILED):
            continue
        name = obj["metadata"]["name"]
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
        )
        log.warning("deleted TrainingJob %s/%s left running by run %s", namespace, name, run_id)
        deleted.append(name)
    return deleted
