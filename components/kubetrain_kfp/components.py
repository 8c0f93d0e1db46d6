# mypy: disable-error-code="valid-type,type-arg,untyped-decorator,operator,name-match,no-any-return"
# ruff: noqa: UP014, UP045
"""The KFP v2 components: thin `@dsl.component` wrappers over the plain modules.

Each wrapper imports `kubetrain_kfp` at run time, so the task's Python must have it installed:
- on a cluster: `base_image` defaults to KUBETRAIN_KFP_IMAGE (an image built from this repository
  with `pip install '.[kfp]'`); set the env var when compiling, or `task.set_container_image(...)`;
- with `kfp.local.SubprocessRunner(use_venv=False)`: the current environment already has it.
Names of remote jobs come from `run_id`/`task_name`, which default to KFP's own
dsl.PIPELINE_JOB_ID_PLACEHOLDER and dsl.PIPELINE_TASK_NAME_PLACEHOLDER: the same run and task give
the same name, so a retried task reattaches, with nothing passed by hand (kfp.local and backends
that resolve placeholders in input defaults). The example pipelines still pass them explicitly,
which every KFP v2 backend resolves; a placeholder left unresolved is an error saying so.
No `from __future__ import annotations` here: KFP reads the annotations at decoration time, and
it wants bare `list`/`dict`, `Optional[...]` and functional NamedTuple returns, which is why the
mypy/ruff pragmas above switch off exactly those checks for this DSL-only module.
"""

import os
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

IMAGE = os.environ.get("KUBETRAIN_KFP_IMAGE", "ghcr.io/kubetrain/kubetrain-kfp:0.1.0")


def _component(func: Callable[..., Any]) -> Any:
    """Our images ship kfp and kubetrain_kfp: nothing to pip-install when the pod starts."""
    return dsl.component(func, base_image=IMAGE, install_kfp_package=False)


@_component
def eks_training_job(
    model: Output[Model],
    metrics: Output[Metrics],
    image: str = "",
    command: Optional[list] = None,
    args: Optional[list] = None,
    nodes: int = 1,
    instance_type: str = "",
    accelerator: str = "",
    accelerators_per_node: int = 0,
    efa_interfaces: str = "",
    fsx_claim_name: str = "",
    fsx_mount_path: str = "",
    checkpoint_dir: str = "",
    checkpoint_s3_uri: str = "",
    capacity_type: str = "",
    max_restarts: int = -1,
    max_interruptions: int = -1,
    env: Optional[dict] = None,
    spec: Optional[dict] = None,
    train_data: Optional[Input[Dataset]] = None,
    export_uri: str = "",
    namespace: str = "",
    job_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    kubeconfig: str = "",
    poll_interval_seconds: float = 10.0,
    timeout_seconds: float = 0.0,
    delete_on_finish: bool = False,
) -> NamedTuple("Outputs", [("job_name", str)]):
    """Run a kubetrain TrainingJob on EKS and wait for it (reattaches on retry, deletes on stop)."""
    from typing import NamedTuple

    from kubetrain_kfp import launcher, naming, outputs
    from kubetrain_kfp.launcher_spec import build_manifest, build_spec

    outputs.setup_logging()
    job_env = outputs.as_dict(env, "env")
    if train_data is not None and train_data.uri:
        job_env.setdefault("TRAIN_DATA_URI", train_data.uri)
    job_spec = build_spec(
        image=image,
        command=outputs.as_list(command, "command"),
        args=outputs.as_list(args, "args"),
        nodes=nodes,
        instance_type=instance_type,
        accelerator=accelerator,
        accelerators_per_node=accelerators_per_node,
        efa_interfaces=efa_interfaces,
        fsx_claim_name=fsx_claim_name,
        fsx_mount_path=fsx_mount_path,
        checkpoint_dir=checkpoint_dir,
        checkpoint_s3_uri=checkpoint_s3_uri,
        capacity_type=capacity_type,
        max_restarts=max_restarts,
        max_interruptions=max_interruptions,
        env=job_env,
        base_spec=outputs.as_dict(spec, "spec"),
        export_uri=export_uri,
    )
    name = job_name or naming.k8s_name("kt", run_id, task_name)
    tj = launcher.client(kubeconfig, namespace)
    manifest = build_manifest(name, tj.namespace, job_spec, run_id, task_name)
    result = launcher.run(
        tj,
        manifest,
        poll_seconds=poll_interval_seconds,
        timeout_seconds=timeout_seconds,
        export_uri=export_uri,
        delete_on_finish=delete_on_finish,
    )
    outputs.fill_artifact(model, result.model_uri, result.metadata)
    outputs.fill_metrics(metrics, result.metrics)
    return NamedTuple("Outputs", [("job_name", str)])(result.job_name)


@_component
def sagemaker_training(
    model: Output[Model],
    metrics: Output[Metrics],
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    train_data: Optional[Input[Dataset]] = None,
    channels: Optional[dict] = None,
    hyperparameters: Optional[dict] = None,
    environment: Optional[dict] = None,
    entrypoint: Optional[list] = None,
    arguments: Optional[list] = None,
    metric_regex: Optional[dict] = None,
    instance_count: int = 1,
    volume_size_gb: int = 50,
    spot: bool = False,
    max_runtime_seconds: int = 86400,
    max_wait_seconds: int = 0,
    checkpoint_s3_uri: str = "",
    subnets: Optional[list] = None,
    security_group_ids: Optional[list] = None,
    kms_key_id: str = "",
    volume_kms_key_id: str = "",
    network_isolation: bool = False,
    inter_container_encryption: bool = False,
    extra_request: Optional[dict] = None,
    region: str = "",
    endpoint_url: str = "",
    job_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    poll_interval_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
) -> NamedTuple("Outputs", [("job_name", str)]):
    """SageMaker training job (managed spot + CheckpointConfig); Model = model.tar.gz in S3."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    data = outputs.as_dict(channels, "channels")
    if train_data is not None and train_data.uri:
        data.setdefault("train", train_data.uri)
    target = sm.Target(
        run_id, task_name, job_name, region, endpoint_url, poll_interval_seconds, timeout_seconds
    )
    result = sm.train(
        target,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        output_s3_uri=output_s3_uri,
        channels=data,
        hyperparameters=outputs.as_dict(hyperparameters, "hyperparameters"),
        environment=outputs.as_dict(environment, "environment"),
        entrypoint=outputs.as_list(entrypoint, "entrypoint"),
        arguments=outputs.as_list(arguments, "arguments"),
        metric_regex=outputs.as_dict(metric_regex, "metric_regex"),
        instance_count=instance_count,
        volume_size_gb=volume_size_gb,
        spot=spot,
        max_runtime_seconds=max_runtime_seconds,
        max_wait_seconds=max_wait_seconds,
        checkpoint_s3_uri=checkpoint_s3_uri,
        security=sm.Security.of(
            subnets=outputs.as_list(subnets, "subnets"),
            security_group_ids=outputs.as_list(security_group_ids, "security_group_ids"),
            kms_key_id=kms_key_id,
            volume_kms_key_id=volume_kms_key_id,
            network_isolation=network_isolation,
            inter_container_encryption=inter_container_encryption,
        ),
        extra_request=outputs.integral(outputs.as_dict(extra_request, "extra_request")),
    )
    outputs.fill_artifact(model, result.output_uri, {**result.metadata, "backend": "sagemaker"})
    outputs.fill_metrics(metrics, result.metrics)
    return NamedTuple("Outputs", [("job_name", str)])(result.job_name)


@_component
def sagemaker_processing(
    output: Output[Dataset],
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    input_s3_uri: str = "",
    input_data: Optional[Input[Dataset]] = None,
    entrypoint: Optional[list] = None,
    arguments: Optional[list] = None,
    environment: Optional[dict] = None,
    instance_count: int = 1,
    max_runtime_seconds: int = 86400,
    subnets: Optional[list] = None,
    security_group_ids: Optional[list] = None,
    kms_key_id: str = "",
    volume_kms_key_id: str = "",
    network_isolation: bool = False,
    inter_container_encryption: bool = False,
    extra_request: Optional[dict] = None,
    region: str = "",
    endpoint_url: str = "",
    job_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    poll_interval_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
) -> NamedTuple("Outputs", [("job_name", str)]):
    """SageMaker processing job; the output Dataset points at its S3 output."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    source = input_data.uri if input_data is not None and input_data.uri else input_s3_uri
    target = sm.Target(
        run_id, task_name, job_name, region, endpoint_url, poll_interval_seconds, timeout_seconds
    )
    result = sm.process(
        target,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        output_s3_uri=output_s3_uri,
        input_s3_uri=source,
        instance_count=instance_count,
        entrypoint=outputs.as_list(entrypoint, "entrypoint"),
        arguments=outputs.as_list(arguments, "arguments"),
        environment=outputs.as_dict(environment, "environment"),
        max_runtime_seconds=max_runtime_seconds,
        security=sm.Security.of(
            subnets=outputs.as_list(subnets, "subnets"),
            security_group_ids=outputs.as_list(security_group_ids, "security_group_ids"),
            kms_key_id=kms_key_id,
            volume_kms_key_id=volume_kms_key_id,
            network_isolation=network_isolation,
            inter_container_encryption=inter_container_encryption,
        ),
        extra_request=outputs.integral(outputs.as_dict(extra_request, "extra_request")),
    )
    outputs.fill_artifact(output, result.output_uri, result.metadata)
    return NamedTuple("Outputs", [("job_name", str)])(result.job_name)


@_component
def sagemaker_tuning(
    model: Output[Model],
    metrics: Output[Metrics],
    image: str,
    role_arn: str,
    instance_type: str,
    output_s3_uri: str,
    objective_metric: str,
    parameter_ranges: dict,
    objective_type: str = "Maximize",
    metric_regex: Optional[dict] = None,
    static_hyperparameters: Optional[dict] = None,
    channels: Optional[dict] = None,
    train_data: Optional[Input[Dataset]] = None,
    strategy: str = "Bayesian",
    max_jobs: int = 4,
    max_parallel_jobs: int = 2,
    instance_count: int = 1,
    spot: bool = False,
    max_runtime_seconds: int = 86400,
    max_wait_seconds: int = 0,
    subnets: Optional[list] = None,
    security_group_ids: Optional[list] = None,
    kms_key_id: str = "",
    volume_kms_key_id: str = "",
    network_isolation: bool = False,
    inter_container_encryption: bool = False,
    extra_request: Optional[dict] = None,
    region: str = "",
    endpoint_url: str = "",
    job_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    poll_interval_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
) -> NamedTuple(
    "Outputs", [("job_name", str), ("best_training_job_name", str), ("best_hyperparameters", dict)]
):
    """SageMaker hyperparameter tuning; Model = the best training job's model.tar.gz."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    data = outputs.as_dict(channels, "channels")
    if train_data is not None and train_data.uri:
        data.setdefault("train", train_data.uri)
    target = sm.Target(
        run_id, task_name, job_name, region, endpoint_url, poll_interval_seconds, timeout_seconds
    )
    result = sm.tune(
        target,
        image=image,
        role_arn=role_arn,
        instance_type=instance_type,
        output_s3_uri=output_s3_uri,
        channels=data,
        static_hyperparameters=outputs.as_dict(static_hyperparameters, "static_hyperparameters"),
        parameter_ranges=outputs.as_dict(parameter_ranges, "parameter_ranges"),
        objective_metric=objective_metric,
        objective_type=objective_type,
        metric_regex=outputs.as_dict(metric_regex, "metric_regex"),
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        strategy=strategy,
        instance_count=instance_count,
        spot=spot,
        max_runtime_seconds=max_runtime_seconds,
        max_wait_seconds=max_wait_seconds,
        security=sm.Security.of(
            subnets=outputs.as_list(subnets, "subnets"),
            security_group_ids=outputs.as_list(security_group_ids, "security_group_ids"),
            kms_key_id=kms_key_id,
            volume_kms_key_id=volume_kms_key_id,
            network_isolation=network_isolation,
            inter_container_encryption=inter_container_encryption,
        ),
        extra_request=outputs.integral(outputs.as_dict(extra_request, "extra_request")),
    )
    outputs.fill_artifact(model, result.output_uri, {**result.metadata, "backend": "sagemaker"})
    outputs.fill_metrics(metrics, result.metrics)
    out = NamedTuple(
        "Outputs",
        [("job_name", str), ("best_training_job_name", str), ("best_hyperparameters", dict)],
    )
    return out(
        result.job_name,
        result.metadata["best_training_job_name"],
        result.metadata["best_hyperparameters"],
    )


@_component
def sagemaker_create_model(
    model: Input[Model],
    image: str,
    role_arn: str,
    environment: Optional[dict] = None,
    region: str = "",
    endpoint_url: str = "",
    model_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
) -> NamedTuple("Outputs", [("model_name", str)]):
    """A SageMaker Model from a Model artifact (EKS or SageMaker training): its URI must be S3."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    target = sm.Target(run_id, task_name, model_name, region, endpoint_url)
    result = sm.create_model(
        target,
        image=image,
        role_arn=role_arn,
        model_data_uri=model.uri,
        environment=outputs.as_dict(environment, "environment"),
    )
    return NamedTuple("Outputs", [("model_name", str)])(result.job_name)


@_component
def sagemaker_deploy(
    model_name: str,
    instance_type: str,
    instance_count: int = 1,
    endpoint_name: str = "",
    region: str = "",
    endpoint_url: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    poll_interval_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
) -> NamedTuple("Outputs", [("endpoint_name", str), ("endpoint_config_name", str)]):
    """Create or update a SageMaker endpoint and wait until it is InService."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    target = sm.Target(
        run_id, task_name, "", region, endpoint_url, poll_interval_seconds, timeout_seconds
    )
    result = sm.deploy(
        target,
        model_name=model_name,
        instance_type=instance_type,
        instance_count=instance_count,
        endpoint_name=endpoint_name,
    )
    out = NamedTuple("Outputs", [("endpoint_name", str), ("endpoint_config_name", str)])
    return out(result.job_name, result.metadata["endpoint_config_name"])


@_component
def sagemaker_batch_transform(
    output: Output[Dataset],
    model_name: str,
    output_s3_uri: str,
    instance_type: str,
    input_s3_uri: str = "",
    input_data: Optional[Input[Dataset]] = None,
    instance_count: int = 1,
    content_type: str = "",
    split_type: str = "None",
    accept: str = "",
    region: str = "",
    endpoint_url: str = "",
    job_name: str = "",
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    task_name: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    poll_interval_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
) -> NamedTuple("Outputs", [("job_name", str)]):
    """SageMaker batch transform; the output Dataset points at its S3 output path."""
    from typing import NamedTuple

    from kubetrain_kfp import outputs
    from kubetrain_kfp import sagemaker as sm

    outputs.setup_logging()
    source = input_data.uri if input_data is not None and input_data.uri else input_s3_uri
    target = sm.Target(
        run_id, task_name, job_name, region, endpoint_url, poll_interval_seconds, timeout_seconds
    )
    result = sm.transform(
        target,
        model_name=model_name,
        input_s3_uri=source,
        output_s3_uri=output_s3_uri,
        instance_type=instance_type,
        instance_count=instance_count,
        content_type=content_type,
        split_type=split_type,
        accept=accept,
    )
    outputs.fill_artifact(output, result.output_uri, result.metadata)
    return NamedTuple("Outputs", [("job_name", str)])(result.job_name)


@_component
def cleanup_run(
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    sagemaker: bool = True,
    kubernetes: bool = True,
    namespace: str = "",
    kubeconfig: str = "",
    region: str = "",
    endpoint_url: str = "",
) -> NamedTuple("Outputs", [("stopped", list)]):
    """Exit-handler backstop: stop SageMaker jobs / delete TrainingJobs this run left running."""
    from typing import NamedTuple

    from kubetrain_kfp import aws, launcher, outputs, reaper

    outputs.setup_logging()
    stopped = []
    if sagemaker:
        stopped += reaper.reap_sagemaker(aws.client("sagemaker", region, endpoint_url), run_id)
    if kubernetes:
        api = launcher.custom_objects_api(kubeconfig)
        stopped += reaper.reap_trainingjobs(api, launcher.default_namespace(namespace), run_id)
    return NamedTuple("Outputs", [("stopped", list)])(stopped)


ALL = {
    "eks_training_job": eks_training_job,
    "sagemaker_training": sagemaker_training,
    "sagemaker_processing": sagemaker_processing,
    "sagemaker_tuning": sagemaker_tuning,
    "sagemaker_create_model": sagemaker_create_model,
    "sagemaker_deploy": sagemaker_deploy,
    "sagemaker_batch_transform": sagemaker_batch_transform,
    "cleanup_run": cleanup_run,
}
