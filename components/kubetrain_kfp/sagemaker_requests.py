"""Pure builders: component inputs -> the boto3 request dicts SageMaker expects.

No I/O, so golden unit tests cover every field; all input validation happens here, before the
first AWS call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetrain_kfp import validate as v
from kubetrain_kfp.constants import TAG_KFP_RUN, TAG_KFP_TASK
from kubetrain_kfp.naming import label_value

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
_RANGE_KEYS = ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")


def tags(run_id: str, task_name: str) -> list[dict[str, str]]:
    """Tags that let a person (or a reaper) find every job a pipeline run started."""
    return [
        {"Key": TAG_KFP_RUN, "Value": label_value(run_id) or "unknown"},
        {"Key": TAG_KFP_TASK, "Value": label_value(task_name) or "unknown"},
    ]


def _channels(channels: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for channel, uri in channels.items():
        v.s3_uri(uri, f"channels[{channel!r}]")
        out.append(
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
    return out


def _algorithm(
    image: str, entrypoint: Sequence[str], arguments: Sequence[str], metric_regex: Mapping[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "TrainingImage": v.require(image, "image", "give the training container image URI"),
        "TrainingInputMode": "File",
    }
    if entrypoint:
        spec["ContainerEntrypoint"] = list(entrypoint)
    if arguments:
        spec["ContainerArguments"] = list(arguments)
    if metric_regex:
        spec["MetricDefinitions"] = [{"Name": k, "Regex": r} for k, r in metric_regex.items()]
    return spec


def training_definition(
    *,
    job_name: str,
    image: str,
    role_arn: str,
    instance_type: str,
    instance_count: int,
    output_s3_uri: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, object],
    environment: Mapping[str, object],
    entrypoint: Sequence[str] = (),
    arguments: Sequence[str] = (),
    metric_regex: Mapping[str, str] | None = None,
    volume_size_gb: int = 50,
    spot: bool = False,
    max_runtime_seconds: int = 86400,
    max_wait_seconds: int = 0,
    checkpoint_s3_uri: str = "",
) -> dict[str, Any]:
    """The fields a training job and a tuning job's TrainingJobDefinition share.

    With spot on and no checkpoint location, checkpoints go under the job's own output prefix:
    the name is deterministic, so a retried task resumes from the same place.
    """
    v.s3_uri(output_s3_uri, "output_s3_uri")
    v.s3_uri(checkpoint_s3_uri, "checkpoint_s3_uri", required=False)
    v.positive(instance_count, "instance_count")
    v.positive(volume_size_gb, "volume_size_gb")
    request: dict[str, Any] = {
        "AlgorithmSpecification": _algorithm(image, entrypoint, arguments, metric_regex or {}),
        "RoleArn": v.role_arn(role_arn),
        "InputDataConfig": _channels(channels),
        "OutputDataConfig": {"S3OutputPath": output_s3_uri},
        "ResourceConfig": {
            "InstanceType": v.sagemaker_instance_type(instance_type, api="training"),
            "InstanceCount": int(instance_count),
            "VolumeSizeInGB": int(volume_size_gb),
        },
        "StoppingCondition": v.spot_stopping_condition(spot, max_runtime_seconds, max_wait_seconds),
        "EnableManagedSpotTraining": bool(spot),
    }
    if hyperparameters:
        request["HyperParameters"] = v.string_map(hyperparameters, "hyperparameters")
    if environment:
        request["Environment"] = v.string_map(environment, "environment")
    if spot and not checkpoint_s3_uri:
        checkpoint_s3_uri = f"{output_s3_uri.rstrip('/')}/{job_name}/checkpoints"
    if checkpoint_s3_uri:
        request["CheckpointConfig"] = {
            "S3Uri": checkpoint_s3_uri,
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    if not request["InputDataConfig"]:
        del request["InputDataConfig"]
    return request


def tuning_request(
    *,
    definition: dict[str, Any],
    objective_metric: str,
    objective_type: str,
    parameter_ranges: Mapping[str, Any],
    max_jobs: int,
    max_parallel_jobs: int,
    strategy: str = "Bayesian",
) -> dict[str, Any]:
    v.require(objective_metric, "objective_metric", "name the metric to optimize")
    v.one_of(objective_type, "objective_type", ("Maximize", "Minimize"))
    v.one_of(strategy, "strategy", ("Bayesian", "Random", "Hyperband", "Grid"))
    v.positive(max_jobs, "max_jobs")
    v.positive(max_parallel_jobs, "max_parallel_jobs")
    unknown = sorted(set(parameter_ranges) - set(_RANGE_KEYS))
    if unknown or not parameter_ranges:
        raise v.InputError(
            f"input 'parameter_ranges' must map some of {', '.join(_RANGE_KEYS)} to lists of "
            f"ranges; got keys {sorted(parameter_ranges)}"
        )
    definition = dict(definition)
    static = definition.pop("HyperParameters", None)
    if static:
        definition["StaticHyperParameters"] = static
    return {
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {
                "Type": objective_type,
                "MetricName": objective_metric,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": int(max_jobs),
                "MaxParallelTrainingJobs": int(max_parallel_jobs),
            },
            "ParameterRanges": dict(parameter_ranges),
        },
        "TrainingJobDefinition": definition,
    }


def processing_request(
    *,
    image: str,
    role_arn: str,
    instance_type: str,
    instance_count: int,
    input_s3_uri: str,
    output_s3_uri: str,
    entrypoint: Sequence[str],
    arguments: Sequence[str],
    environment: Mapping[str, object],
    max_runtime_seconds: int = 86400,
    volume_size_gb: int = 30,
) -> dict[str, Any]:
    app: dict[str, Any] = {
        "ImageUri": v.require(image, "image", "give the processing container image URI")
    }
    if entrypoint:
        app["ContainerEntrypoint"] = list(entrypoint)
    if arguments:
        app["ContainerArguments"] = list(arguments)
    request: dict[str, Any] = {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": int(v.positive(instance_count, "instance_count")),
                "InstanceType": v.sagemaker_instance_type(instance_type, api="processing"),
                "VolumeSizeInGB": int(v.positive(volume_size_gb, "volume_size_gb")),
            }
        },
        "AppSpecification": app,
        "RoleArn": v.role_arn(role_arn),
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "output",
                    "S3Output": {
                        "S3Uri": v.s3_uri(output_s3_uri, "output_s3_uri"),
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "StoppingCondition": {
            "MaxRuntimeInSeconds": int(v.positive(max_runtime_seconds, "max_runtime_seconds"))
        },
    }
    if input_s3_uri:
        request["ProcessingInputs"] = [
            {
                "InputName": "input",
                "S3Input": {
                    "S3Uri": v.s3_uri(input_s3_uri, "input_s3_uri"),
                    "LocalPath": "/opt/ml/processing/input",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ]
    if environment:
        request["Environment"] = v.string_map(environment, "environment")
    return request


def transform_request(
    *,
    model_name: str,
    input_s3_uri: str,
    output_s3_uri: str,
    instance_type: str,
    instance_count: int,
    content_type: str = "",
    split_type: str = "None",
    accept: str = "",
    max_concurrent_transforms: int = 0,
) -> dict[str, Any]:
    v.one_of(split_type, "split_type", ("None", "Line", "RecordIO", "TFRecord"))
    request: dict[str, Any] = {
        "ModelName": v.require(model_name, "model_name", "pass the create-model step's output"),
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": v.s3_uri(input_s3_uri, "input_s3_uri"),
                }
            },
            "SplitType": split_type,
        },
        "TransformOutput": {"S3OutputPath": v.s3_uri(output_s3_uri, "output_s3_uri")},
        "TransformResources": {
            "InstanceType": v.sagemaker_instance_type(instance_type, api="transform"),
            "InstanceCount": int(v.positive(instance_count, "instance_count")),
        },
    }
    if content_type:
        request["TransformInput"]["ContentType"] = content_type
    if accept:
        request["TransformOutput"]["Accept"] = accept
    if max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = int(max_concurrent_transforms)
    return request


def model_request(
    *, image: str, role_arn: str, model_data_uri: str, environment: Mapping[str, object]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Image": v.require(image, "image", "give the inference container image URI"),
    }
    if model_data_uri and not model_data_uri.startswith("s3://"):
        raise v.InputError(
            f"input 'model' points at {model_data_uri!r}, which SageMaker cannot read: it is "
            "not in S3 (a checkpoint that only lives on the cluster's FSx or local disk). Give "
            "eks_training_job a checkpoint_s3_uri (its Model is then the committed checkpoint "
            "in S3) or an export_uri the training script writes the model to"
        )
    v.s3_uri(model_data_uri, "model (artifact uri)")
    if model_data_uri.endswith("/"):
        # A directory of files (a checkpoint mirrored by kubetrain), served uncompressed.
        container["ModelDataSource"] = {
            "S3DataSource": {
                "S3Uri": model_data_uri,
                "S3DataType": "S3Prefix",
                "CompressionType": "None",
            }
        }
    else:
        container["ModelDataUrl"] = model_data_uri
    if environment:
        container["Environment"] = v.string_map(environment, "environment")
    return {"ExecutionRoleArn": v.role_arn(role_arn), "PrimaryContainer": container}


def production_variants(
    *, model_name: str, instance_type: str, instance_count: int
) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": "AllTraffic",
            "ModelName": v.require(model_name, "model_name", "pass the create-model output"),
            "InstanceType": v.sagemaker_instance_type(instance_type, api="hosting"),
            "InitialInstanceCount": int(v.positive(instance_count, "instance_count")),
            "InitialVariantWeight": 1.0,
        }
    ]
