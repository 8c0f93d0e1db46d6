"""SageMaker steps as plain functions: validate, name, run, and return JSON-clean results.

The `@dsl.component` wrappers in `components.py` only move these results into KFP outputs, so
everything here is testable against moto without KFP. Every function validates all inputs and
resolves the deterministic name before its first AWS call.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from kubetrain_kfp import aws, naming
from kubetrain_kfp import sagemaker_requests as req
from kubetrain_kfp import validate as v
from kubetrain_kfp.sagemaker_jobs import (
    PROCESSING,
    TRAINING,
    TRANSFORM,
    TUNING,
    JobFailed,
    JobTimeout,
    run_job,
)
from kubetrain_kfp.termination import terminate_with

log = logging.getLogger(__name__)

TUNING_NAME_MAX = 32


@dataclass(frozen=True)
class Target:
    """Where and how to talk to SageMaker, and how this task is named."""

    run_id: str
    task_name: str
    job_name: str = ""  # explicit override of the deterministic name
    region: str = ""
    endpoint_url: str = ""
    poll_seconds: float = 30.0
    timeout_seconds: float = 0.0

    def name(self, prefix: str, max_len: int = naming.SAGEMAKER_MAX) -> str:
        if self.job_name:
            if len(self.job_name) > max_len or not _name_ok(self.job_name):
                raise v.InputError(
                    f"input 'job_name' = {self.job_name!r} is not a valid SageMaker name: up to "
                    f"{max_len} letters, digits and '-', starting with a letter or digit"
                )
            return self.job_name
        return naming.sagemaker_name(prefix, self.run_id, self.task_name, max_len)

    def check(self) -> None:
        v.positive(self.poll_seconds, "poll_interval_seconds")
        v.positive(self.timeout_seconds, "timeout_seconds", allow_zero=True)

    def sagemaker(self) -> Any:
        return aws.client("sagemaker", self.region, self.endpoint_url)

    def logs(self) -> Any:
        return aws.client("logs", self.region, self.endpoint_url)

    def tags(self) -> list[dict[str, str]]:
        return req.tags(self.run_id, self.task_name)


def _name_ok(name: str) -> bool:

    return re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name) is not None


@dataclass(frozen=True)
class JobResult:
    """What a job component returns: names, the primary output URI, metrics and metadata."""

    job_name: str
    job_arn: str
    output_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    """Datetimes from boto3 become ISO strings: every output must be plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(x) for x in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


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
    request["Tags"] = target.tags()
    desc = run_job(
        target.sagemaker(),
        TRAINING,
        name,
        request,
        poll_seconds=target.poll_seconds,
        timeout_seconds=target.timeout_seconds,
        logs_client=target.logs(),
    )
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("TrainingJobArn", "")),
        output_uri=str(desc.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")),
        metrics=training_metrics(desc),
        metadata=_jsonable(
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
    request["Tags"] = target.tags()
    desc = run_job(
        target.sagemaker(),
        PROCESSING,
        name,
        request,
        poll_seconds=target.poll_seconds,
        timeout_seconds=target.timeout_seconds,
        logs_client=target.logs(),
    )
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
    request = req.tuning_request(
        definition=definition,
        objective_metric=objective_metric,
        objective_type=objective_type,
        parameter_ranges=parameter_ranges,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        strategy=strategy,
    )
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
        metadata=_jsonable(
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
    request["Tags"] = target.tags()
    desc = run_job(
        target.sagemaker(),
        TRANSFORM,
        name,
        request,
        poll_seconds=target.poll_seconds,
        timeout_seconds=target.timeout_seconds,
        logs_client=target.logs(),
    )
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("TransformJobArn", "")),
        output_uri=str((desc.get("TransformOutput") or {}).get("S3OutputPath", output_s3_uri)),
        metadata={"transform_job_name": name, "model_name": model_name},
    )


def create_model(
    target: Target,
    *,
    image: str,
    role_arn: str,
    model_data_uri: str,
    environment: Mapping[str, object] | None = None,
) -> JobResult:
    """A SageMaker Model; reused when this task already created it (models are immutable)."""
    name = target.name("model")
    request = req.model_request(
        image=image, role_arn=role_arn, model_data_uri=model_data_uri, environment=environment or {}
    )
    client = target.sagemaker()
    try:
        existing: dict[str, Any] | None = client.describe_model(ModelName=name)
    except ClientError as exc:
        if not aws.is_not_found(exc):
            raise
        existing = None
    if existing is None:
        created = client.create_model(ModelName=name, Tags=target.tags(), **request)
        arn = str(created.get("ModelArn", ""))
        log.info("created model %s from %s", name, model_data_uri)
    else:
        have = (existing.get("PrimaryContainer") or {}).get("ModelDataUrl")
        if have and have != model_data_uri:
            raise JobFailed(
                f"model {name} already exists with ModelDataUrl {have!r}, not {model_data_uri!r}: "
                "set 'model_name' to a new name"
            )
        arn = str(existing.get("ModelArn", ""))
        log.info("reusing existing model %s", name)
    return JobResult(job_name=name, job_arn=arn, output_uri=model_data_uri)


def _describe_endpoint(client: Any, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.describe_endpoint(EndpointName=name)
        return result
    except ClientError as exc:
        if aws.is_not_found(exc):
            return None
        raise


def deploy(
    target: Target,
    *,
    model_name: str,
    instance_type: str,
    instance_count: int = 1,
    endpoint_name: str = "",
) -> JobResult:
    """Create or update an endpoint to serve `model_name`, and wait until it is InService.

    The endpoint config is named by a hash of its content: the same request reattaches, a new
    model or instance type makes a new config and an `update_endpoint` (real blue/green update).
    """
    target.check()
    variants = req.production_variants(
        model_name=model_name, instance_type=instance_type, instance_count=instance_count
    )
    if endpoint_name:
        target = dataclasses.replace(target, job_name=endpoint_name)
    name = target.name("endpoint")
    config_name = f"{name[:46]}-{naming.spec_hash(variants)}"
    client = target.sagemaker()
    try:
        client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as exc:
        if not aws.is_not_found(exc):
            raise
        client.create_endpoint_config(
            EndpointConfigName=config_name, ProductionVariants=variants, Tags=target.tags()
        )
        log.info("created endpoint config %s", config_name)
    current = _describe_endpoint(client, name)
    if current is None:
        client.create_endpoint(
            EndpointName=name, EndpointConfigName=config_name, Tags=target.tags()
        )
        log.info("creating endpoint %s with config %s", name, config_name)
    elif current.get("EndpointConfigName") != config_name:
        client.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
        log.info("updating endpoint %s to config %s", name, config_name)
    else:
        log.info("endpoint %s already uses config %s; waiting for it", name, config_name)
    desc = _wait_in_service(client, name, target)
    return JobResult(
        job_name=name,
        job_arn=str(desc.get("EndpointArn", "")),
        output_uri="",
        metadata={"endpoint_name": name, "endpoint_config_name": config_name},
    )


def _wait_in_service(client: Any, name: str, target: Target) -> dict[str, Any]:
    start, status = time.monotonic(), ""
    # Endpoint creation cannot be cancelled half-way; on SIGTERM just exit (the endpoint stays).
    with terminate_with(lambda: log.warning("endpoint %s is left as it is", name)):
        while True:
            desc = _describe_endpoint(client, name) or {}
            if desc.get("EndpointStatus") != status:
                status = str(desc.get("EndpointStatus"))
                log.info("endpoint %s: %s", name, status)
            if status == "InService":
                return desc
            if status == "Failed":
                reason = desc.get("FailureReason") or "no FailureReason reported"
                raise JobFailed(f"endpoint {name} failed: {reason}")
            if target.timeout_seconds and time.monotonic() - start > target.timeout_seconds:
                raise JobTimeout(f"endpoint {name} not InService within timeout_seconds")
            time.sleep(target.poll_seconds)
