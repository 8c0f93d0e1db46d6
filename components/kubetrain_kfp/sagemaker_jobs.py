"""Create-or-reattach, wait, log and stop: the life cycle every SageMaker job component shares.

A retried task calls `run_job` with the same deterministic name: it describes first and follows the
existing job instead of creating a second one (moto, unlike SageMaker, accepts duplicate names, so
describing first is also what keeps the tests honest). SIGTERM stops the job before the process
exits; `Stopped` and `Failed` end the component with the job's FailureReason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kubetrain_kfp import aws
from kubetrain_kfp.cwlogs import LogTailer
from kubetrain_kfp.termination import terminate_with

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """How one SageMaker job type names its API calls and fields."""

    label: str  # for messages: "training", "processing", ...
    api: str  # "training_job" -> create_training_job / describe_training_job / stop_training_job
    name_field: str  # "TrainingJobName"
    status_field: str  # "TrainingJobStatus"
    log_group: str  # "" when the job type writes no logs of its own

    def call(self, client: Any, verb: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = getattr(client, f"{verb}_{self.api}")(**kwargs)
        return result


TRAINING = JobKind(
    "training",
    "training_job",
    "TrainingJobName",
    "TrainingJobStatus",
    "/aws/sagemaker/TrainingJobs",
)
PROCESSING = JobKind(
    "processing",
    "processing_job",
    "ProcessingJobName",
    "ProcessingJobStatus",
    "/aws/sagemaker/ProcessingJobs",
)
TRANSFORM = JobKind(
    "transform",
    "transform_job",
    "TransformJobName",
    "TransformJobStatus",
    "/aws/sagemaker/TransformJobs",
)
TUNING = JobKind(
    "hyperparameter tuning",
    "hyper_parameter_tuning_job",
    "HyperParameterTuningJobName",
    "HyperParameterTuningJobStatus",
    "",
)

SUCCEEDED = "Completed"
FAILED = ("Failed", "Stopped")


class JobFailed(RuntimeError):
    """The SageMaker job ended in Failed or Stopped; the message carries its FailureReason."""


class JobTimeout(RuntimeError):
    """The job did not finish within the component's `timeout_seconds`; it was stopped."""


def describe(client: Any, kind: JobKind, name: str) -> dict[str, Any] | None:
    try:
        return kind.call(client, "describe", **{kind.name_field: name})
    except ClientError as exc:
        if aws.is_not_found(exc):
            return None
        raise


def create_or_attach(client: Any, kind: JobKind, name: str, request: dict[str, Any]) -> bool:
    """Create the job unless one with this name exists; True when it attached to an existing one."""
    existing = describe(client, kind, name)
    if existing is not None:
        log.info(
            "reattaching to existing %s job %s (status %s) instead of creating a new one",
            kind.label,
            name,
            existing.get(kind.status_field),
        )
        return True
    try:
        kind.call(client, "create", **{**request, kind.name_field: name})
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceInUse":
            raise
        log.info("%s job %s was created concurrently; attaching to it", kind.label, name)
        return True
    log.info("created %s job %s", kind.label, name)
    return False


def stop(client: Any, kind: JobKind, name: str, wait_seconds: float, poll_seconds: float) -> None:
    """Ask SageMaker to stop the job and wait (bounded) until it reports a terminal status."""
    try:
        kind.call(client, "stop", **{kind.name_field: name})
        log.warning("requested stop of %s job %s", kind.label, name)
    except ClientError as exc:
        # ValidationException: already finished. Anything else: report, do not hide the exit.
        log.warning("stop of %s job %s failed: %s", kind.label, name, exc)
        return
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        desc = describe(client, kind, name) or {}
        if desc.get(kind.status_field) in (SUCCEEDED, *FAILED):
            log.warning("%s job %s is %s", kind.label, name, desc.get(kind.status_field))
            return
        time.sleep(poll_seconds)


def _log_transitions(desc: dict[str, Any], seen: int) -> int:
    transitions = desc.get("SecondaryStatusTransitions") or []
    for item in transitions[seen:]:
        log.info("secondary status: %s - %s", item.get("Status"), item.get("StatusMessage", ""))
    return len(transitions)


def run_job(
    client: Any,
    kind: JobKind,
    name: str,
    request: dict[str, Any],
    *,
    poll_seconds: float,
    timeout_seconds: float = 0,
    logs_client: Any = None,
    stop_wait_seconds: float = 20.0,
) -> dict[str, Any]:
    """Create or reattach, wait for a terminal status, return the final description.

    Raises JobFailed (Failed/Stopped) or JobTimeout; SIGTERM stops the job and exits with 143.
    """
    tailer = (
        LogTailer(logs_client, kind.log_group, name) if logs_client and kind.log_group else None
    )
    start = time.monotonic()
    status, seen = "", 0
    # The handler is in place before the create: a SIGTERM right after it still stops the job.
    with terminate_with(lambda: stop(client, kind, name, stop_wait_seconds, poll_seconds)):
        create_or_attach(client, kind, name, request)
        while True:
            desc = describe(client, kind, name)
            if desc is None:
                raise JobFailed(f"{kind.label} job {name} disappeared while it was being followed")
            if desc.get(kind.status_field) != status:
                status = str(desc.get(kind.status_field))
                log.info("%s job %s: %s", kind.label, name, status)
            seen = _log_transitions(desc, seen)
            if tailer:
                tailer.poll()
            if status == SUCCEEDED or status in FAILED:
                break
            if timeout_seconds and time.monotonic() - start > timeout_seconds:
                stop(client, kind, name, stop_wait_seconds, poll_seconds)
                raise JobTimeout(
                    f"{kind.label} job {name} did not finish within timeout_seconds="
                    f"{timeout_seconds:g}; it was stopped"
                )
            time.sleep(poll_seconds)
    if status in FAILED:
        reason = desc.get("FailureReason") or "no FailureReason reported"
        raise JobFailed(f"SageMaker {kind.label} job {name} ended {status}: {reason}")
    return desc
