"""SageMaker hosting: a Model from a Model artifact, and an endpoint kept in sync with it.

Models are immutable and reused on retry; the endpoint config is named by a hash of its content,
so the same request reattaches and a new model updates the endpoint in place.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from kubetrain_kfp import aws, naming
from kubetrain_kfp import sagemaker_requests as req
from kubetrain_kfp.sagemaker_common import JobResult, Target
from kubetrain_kfp.sagemaker_jobs import JobFailed, JobTimeout
from kubetrain_kfp.termination import terminate_with

log = logging.getLogger(__name__)


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
        container = existing.get("PrimaryContainer") or {}
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        have = container.get("ModelDataUrl") or source.get("S3Uri")
        if have and have != model_data_uri:
            raise JobFailed(
                f"model {name} already exists with model data {have!r}, not {model_data_uri!r}: "
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
