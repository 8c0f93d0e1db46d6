"""SageMaker steps as plain functions: validate, name, run, and return JSON-clean results.

The `@dsl.component` wrappers in `components.py` only move these results into KFP outputs, so
everything here is testable against moto without KFP. Every function validates all inputs and
resolves the deterministic name before its first AWS call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetrain_kfp import sagemaker_requests as req
from kubetrain_kfp.sagemaker_common import JobResult, Target, jsonable
from kubetrain_kfp.sagemaker_deploy import create_model, deploy
from kubetrain_kfp.sagemaker_jobs import (
    PROCESSING,
    TRAINING,
    TRANSFORM,
    TUNING,
    JobFailed,
    JobTimeout,
    run_job,
)
from kubetrain_kfp.sagemaker_security import Security, merge_extra

__all__ = [
    "JobFailed",
    "JobResult",
    "JobTimeout",
    "Security",
    "Target",
    "create_model",
    "deploy",
    "process",
    "train",
    "transform",
    "tune",
]

TUNING_NAME_MAX = 32


def training_metrics(desc: Mapping[str, Any]) -> dict[str, float]:
    metrics = {
        str(m["MetricName"]): float(m["Value"]) for m in desc.get("FinalMetricDataList") or []
    }
    billable, total = desc.get("BillableTimeInSeconds"), desc.get("TrainingTimeInSeconds")
    if billable is not None:
        metrics["billable_seconds"] = float(billable)
    if total:
        metrics["training_seconds"] = float(total)
        if billable is not None and desc.get("EnableManagedSpotTraining"):
            metrics["spot_savings"] = round(1.0 - float(billable) / float(total), 4)
    return metrics


def train(
    target: Target,
    *,
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, object],
    instance_count: int = 1,
    environment: Mapping[str, object] | None = None,
    entrypoint: Sequence[str] = (),
    arguments: Sequence[str] = (),
    metric_regex: Mapping[str, str] | None = None,
    volume_size_gb: int = 50,
    spot: bool = False,
    max_runtime_seconds: int = 86400,
    max_wait_seconds: int = 0,
    checkpoint_s3_uri: str = "",
    security: Security | None = None,
    extra_request: Mapping[str, Any] | None = None,
) -> JobResult:
    """A training job (managed spot optional); output_uri is the model.tar.gz S3 URI."""
    target.check()
    name = target.name("train")
    request = req.training_definition(
        job_name=name,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        output_s3_uri=output_s3_uri,
        channels=channels,
        hyperparameters=hyperparameters,
        environment=environment or {},
        entrypoint=entrypoint,
        arguments=arguments,
        metric_regex=metric_regex,
        volume_size_gb=volume_size_gb,
        spot=spot,
        max_runtime_seconds=max_runtime_seconds,
        max_wait_seconds=max_wait_seconds,
        checkpoint_s3_uri=checkpoint_s3_uri,
    )
    request = (security or Security()).training(request)
    request = merge_extra(request, extra_request, "CreateTrainingJob")
    desc = target.run(TRAINING, name, request)
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("TrainingJobArn", "")),
        output_uri=str(desc.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")),
        metrics=training_metrics(desc),
        metadata=jsonable(
            {
                "training_job_name": name,
                "training_job_arn": desc.get("TrainingJobArn", ""),
                "image": image,
                "instance_type": instance_type,
                "instance_count": instance_count,
                "spot": bool(spot),
                "checkpoint_s3_uri": (desc.get("CheckpointConfig") or {}).get("S3Uri", ""),
                "hyperparameters": desc.get("HyperParameters") or {},
            }
        ),
    )


def process(
    target: Target,
    *,
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    input_s3_uri: str = "",
    instance_count: int = 1,
    entrypoint: Sequence[str] = (),
    arguments: Sequence[str] = (),
    environment: Mapping[str, object] | None = None,
    max_runtime_seconds: int = 86400,
    security: Security | None = None,
    extra_request: Mapping[str, Any] | None = None,
) -> JobResult:
    """A processing job; output_uri is where its output was uploaded."""
    target.check()
    name = target.name("process")
    request = req.processing_request(
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        input_s3_uri=input_s3_uri,
        output_s3_uri=output_s3_uri,
        entrypoint=entrypoint,
        arguments=arguments,
        environment=environment or {},
        max_runtime_seconds=max_runtime_seconds,
    )
    request = (security or Security()).processing(request)
    request = merge_extra(request, extra_request, "CreateProcessingJob")
    desc = target.run(PROCESSING, name, request)
    outputs = (desc.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    uri = outputs[0]["S3Output"]["S3Uri"] if outputs else output_s3_uri
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("ProcessingJobArn", "")),
        output_uri=str(uri),
        metadata={"processing_job_name": name, "image": image, "input_s3_uri": input_s3_uri},
    )


def tune(
    target: Target,
    *,
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    channels: Mapping[str, str],
    static_hyperparameters: Mapping[str, object],
    parameter_ranges: Mapping[str, Any],
    objective_metric: str,
    objective_type: str = "Maximize",
    metric_regex: Mapping[str, str] | None = None,
    max_jobs: int = 4,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
    instance_count: int = 1,
    spot: bool = False,
    max_runtime_seconds: int = 86400,
    max_wait_seconds: int = 0,
    security: Security | None = None,
    extra_request: Mapping[str, Any] | None = None,
) -> JobResult:
    """A tuning job; output_uri is the best training job's model.tar.gz."""
    target.check()
    name = target.name("tune", TUNING_NAME_MAX)
    definition = req.training_definition(
        job_name=name,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        output_s3_uri=output_s3_uri,
        channels=channels,
        hyperparameters=static_hyperparameters,
        environment={},
        metric_regex=metric_regex,
        spot=spot,
        max_runtime_seconds=max_runtime_seconds,
        max_wait_seconds=max_wait_seconds,
    )
    definition = (security or Security()).training(definition)
    request = req.tuning_request(
        definition=definition,
        objective_metric=objective_metric,
        objective_type=objective_type,
        parameter_ranges=parameter_ranges,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        strategy=strategy,
    )
    request = merge_extra(request, extra_request, "CreateHyperParameterTuningJob")
    request["Tags"] = target.tags()
    desc = run_job(
        target.sagemaker(),
        TUNING,
        name,
        request,
        poll_seconds=target.poll_seconds,
        timeout_seconds=target.timeout_seconds,
    )
    best = desc.get("BestTrainingJob") or {}
    best_name = str(best.get("TrainingJobName", ""))
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    metrics = {f"{k.lower()}_jobs": float(n) for k, n in _counters(desc).items()}
    if "Value" in objective:
        metrics["best_objective"] = float(objective["Value"])
    # The model path follows SageMaker's layout; describing the best job would cost a call that
    # moto cannot answer (its best job is fictitious), and the layout is documented and stable.
    model_uri = f"{output_s3_uri.rstrip('/')}/{best_name}/output/model.tar.gz" if best_name else ""
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("HyperParameterTuningJobArn", "")),
        output_uri=model_uri,
        metrics=metrics,
        metadata=jsonable(
            {
                "tuning_job_name": name,
                "best_training_job_name": best_name,
                "best_hyperparameters": best.get("TunedHyperParameters") or {},
            }
        ),
    )


def _counters(desc: Mapping[str, Any]) -> dict[str, int]:
    counters = desc.get("TrainingJobStatusCounters") or {}
    return {k: int(n) for k, n in counters.items() if isinstance(n, int)}


def transform(
    target: Target,
    *,
    model_name: str,
    input_s3_uri: str,
    output_s3_uri: str,
    instance_type: str,
    instance_count: int = 1,
    content_type: str = "",
    split_type: str = "None",
    accept: str = "",
) -> JobResult:
    """A batch transform job; output_uri is its S3 output path."""
    target.check()
    name = target.name("transform")
    request = req.transform_request(
        model_name=model_name,
        input_s3_uri=input_s3_uri,
        output_s3_uri=output_s3_uri,
        instance_type=instance_type,
        instance_count=instance_count,
        content_type=content_type,
        split_type=split_type,
        accept=accept,
    )
    desc = target.run(TRANSFORM, name, request)
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("TransformJobArn", "")),
        output_uri=str((desc.get("TransformOutput") or {}).get("S3OutputPath", output_s3_uri)),
        metadata={"transform_job_name": name, "model_name": model_name},
    )
