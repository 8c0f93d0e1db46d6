"""Input checks that run before any AWS or Kubernetes call.

A pipeline author who typed `s3:/bucket` or `m5.xlarge` should learn it in the first second of the
task, from a message that names the input and the fix, not minutes later from a failed job. Every
check raises `InputError` (a `ValueError`: KFP and retry policies treat it as a user error).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping

_S3_RE = re.compile(r"^s3://(?P<bucket>[^/]+)(?:/(?P<key>.*))?$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_EC2_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_ML_TYPE_RE = re.compile(r"^ml\.(?P<family>[a-z0-9-]+)\.(?P<size>[a-z0-9]+)$")

# The instance types each SageMaker API accepts are enums in botocore's service model (the same
# data the SageMaker API validates against): a type valid for training may not be for batch
# transform. The botocore installed with boto3 is the source, so new types arrive with upgrades.
INSTANCE_TYPE_SHAPES = {
    "training": ("TrainingInstanceType", "CreateTrainingJob"),
    "tuning": ("TrainingInstanceType", "CreateHyperParameterTuningJob"),
    "processing": ("ProcessingInstanceType", "CreateProcessingJob"),
    "transform": ("TransformInstanceType", "CreateTransformJob"),
    "hosting": ("ProductionVariantInstanceType", "CreateEndpointConfig"),
}


@functools.cache
def sagemaker_instance_types(api: str) -> frozenset[str]:
    """Instance types the SageMaker `api` (a key of INSTANCE_TYPE_SHAPES) accepts."""
    import botocore.session
    from botocore.model import StringShape

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.shape_for(INSTANCE_TYPE_SHAPES[api][0])
    assert isinstance(shape, StringShape), shape
    return frozenset(shape.enum)


ACCELERATORS = ("nvidia", "neuron", "none")
CAPACITY_TYPES = ("spot", "on-demand", "spot-then-on-demand")


class InputError(ValueError):
    """A component input is wrong; the message names the input and what to do."""


def require(value: str, name: str, hint: str) -> str:
    if not value or not value.strip():
        raise InputError(f"input '{name}' is required: {hint}")
    return value.strip()


def s3_uri(value: str, name: str, *, required: bool = True) -> str:
    """Check `s3://bucket[/key]` (bucket naming rules included)."""
    if not value:
        if required:
            raise InputError(f"input '{name}' is required: give an S3 URI like s3://my-bucket/path")
        return value
    match = _S3_RE.match(value)
    if not match:
        raise InputError(
            f"input '{name}' = {value!r} is not an S3 URI: use the form s3://my-bucket/path "
            "(scheme 's3://', then the bucket name)"
        )
    bucket = match.group("bucket")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InputError(
            f"input '{name}' = {value!r} has an invalid bucket name {bucket!r}: bucket names are "
            "3-63 characters of lowercase letters, digits, '.' and '-'"
        )
    return value


def role_arn(value: str, name: str = "role_arn") -> str:
    value = require(value, name, "give the SageMaker execution role ARN")
    if not _ROLE_RE.match(value):
        raise InputError(
            f"input '{name}' = {value!r} is not an IAM role ARN: use "
            "arn:aws:iam::<12-digit account>:role/<role name>"
        )
    return value


def sagemaker_instance_type(value: str, name: str = "instance_type", *, api: str) -> str:
    """Check an `ml.<family>.<size>` type against what the SageMaker `api` accepts."""
    value = require(value, name, "give a SageMaker instance type such as ml.m5.xlarge")
    allowed = sagemaker_instance_types(api)
    if value in allowed:
        return value
    operation = INSTANCE_TYPE_SHAPES[api][1]
    if not value.startswith("ml.") and _EC2_TYPE_RE.match(value):
        hint = f" (SageMaker types start with 'ml.': did you mean 'ml.{value}'?)"
    elif any(value in sagemaker_instance_types(other) for other in INSTANCE_TYPE_SHAPES):
        usable = [
            other for other in INSTANCE_TYPE_SHAPES if value in sagemaker_instance_types(other)
        ]
        close = difflib.get_close_matches(value, sorted(allowed), n=3, cutoff=0.8)
        alternatives = f"; similar types it accepts: {', '.join(close)}" if close else ""
        raise InputError(
            f"input '{name}' = {value!r} is a SageMaker instance type for {', '.join(usable)}, "
            f"but {operation} does not accept it{alternatives}"
        )
    else:
        close = difflib.get_close_matches(value, sorted(allowed), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise InputError(
        f"input '{name}' = {value!r} is not a known SageMaker instance type for {operation}{hint}; "
        "use ml.<family>.<size>, e.g. ml.m5.xlarge or ml.g5.2xlarge"
    )


def ec2_instance_type(value: str, name: str = "instance_type") -> str:
    """An EKS node instance type (no `ml.` prefix); empty means "let the operator choose"."""
    if not value:
        return value
    if value.startswith("ml."):
        raise InputError(
            f"input '{name}' = {value!r} is a SageMaker type; EKS nodes use EC2 names such as "
            f"{value[3:]!r}"
        )
    if not _EC2_TYPE_RE.match(value):
        raise InputError(
            f"input '{name}' = {value!r} is not an EC2 instance type: use <family>.<size>, "
            "e.g. p5.48xlarge or trn1.32xlarge"
        )
    return value


def one_of(value: str, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(f"input '{name}' = {value!r} must be one of: {', '.join(allowed)}")
    return value


def positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"input '{name}' = {value!r} must be {bound}")
    return value


def spot_stopping_condition(
    spot: bool, max_runtime_seconds: int, max_wait_seconds: int
) -> dict[str, int]:
    """SageMaker's `StoppingCondition`; managed spot needs MaxWait >= MaxRuntime."""
    positive(max_runtime_seconds, "max_runtime_seconds")
    condition = {"MaxRuntimeInSeconds": int(max_runtime_seconds)}
    if spot:
        if max_wait_seconds < max_runtime_seconds:
            raise InputError(
                f"input 'max_wait_seconds' = {max_wait_seconds} is below 'max_runtime_seconds' = "
                f"{max_runtime_seconds}: managed spot training waits for capacity within "
                "MaxWaitTimeInSeconds, so set max_wait_seconds >= max_runtime_seconds"
            )
        condition["MaxWaitTimeInSeconds"] = int(max_wait_seconds)
    return condition


def string_map(values: Mapping[str, object], name: str) -> dict[str, str]:
    """SageMaker wants str->str (hyperparameters, environment); accept any JSON and stringify."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise InputError(f"input '{name}' has an empty or non-string key {key!r}")
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            # KFP passes dict inputs through protobuf Struct, which turns 6 into 6.0; an
            # algorithm parsing "max_depth=6.0" as an int would fail, so integral floats print
            # as ints.
            out[key] = str(int(value))
        elif isinstance(value, int | float):
            out[key] = str(value)
        else:
            out[key] = json.dumps(value, sort_keys=True)
    return out
