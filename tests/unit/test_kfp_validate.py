"""Bad inputs fail before any AWS or Kubernetes call, with a message that names the input."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kubetrain_kfp import aws, launcher
from kubetrain_kfp import sagemaker as sm
from kubetrain_kfp import validate as v
from kubetrain_kfp.launcher_spec import build_spec

ROLE = "arn:aws:iam::123456789012:role/sm"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/train:1"


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any AWS/Kubernetes client creation fails the test: validation must come first."""

    def forbidden(*a: Any, **kw: Any) -> None:
        raise AssertionError("a client was created before the inputs were validated")

    monkeypatch.setattr(aws, "client", forbidden)
    monkeypatch.setattr(launcher, "custom_objects_api", forbidden)


def target() -> sm.Target:
    return sm.Target(run_id="run-1", task_name="task")


def train(**kw: Any) -> None:
    base: dict[str, Any] = {
        "image": IMAGE,
        "role_arn": ROLE,
        "instance_type": "ml.g5.2xlarge",
        "output_s3_uri": "s3://bucket/out",
        "channels": {},
        "hyperparameters": {},
    }
    sm.train(target(), **{**base, **kw})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": ""}, "input 'image' is required"),
        (
            {"spot": True, "max_runtime_seconds": 7200, "max_wait_seconds": 3600},
            "input 'max_wait_seconds' = 3600 is below 'max_runtime_seconds' = 7200",
        ),
        ({"instance_type": "g5.2xlarge"}, "did you mean 'ml.g5.2xlarge'"),
        (
            {"instance_type": "ml.g5.2xlarg"},
            "input 'instance_type' = 'ml.g5.2xlarg' is not a known",
        ),
        (
            {"output_s3_uri": "s3:/bucket/out"},
            "input 'output_s3_uri' = 's3:/bucket/out' is not an S3 URI",
        ),
        ({"output_s3_uri": "s3://My_Bucket/x"}, "invalid bucket name 'My_Bucket'"),
        ({"channels": {"train": "bucket/data"}}, "input 'channels['train']'"),
        ({"checkpoint_s3_uri": "/fsx/ckpt"}, "input 'checkpoint_s3_uri'"),
        (
            {"role_arn": "sagemaker-role"},
            "input 'role_arn' = 'sagemaker-role' is not an IAM role ARN",
        ),
    ],
)
def test_training_rejects_bad_inputs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(v.InputError) as err:
        train(**kwargs)
    assert message in str(err.value)


def test_spot_with_enough_wait_passes_validation() -> None:
    # Valid inputs reach the client factory (which this test forbids): proves the check above
    # is the reason the bad cases stopped, not something unrelated.
    with pytest.raises(AssertionError, match="client was created"):
        train(spot=True, max_runtime_seconds=3600, max_wait_seconds=3600)


@pytest.mark.parametrize(
    ("instance_type", "message"),
    [
        (
            "ml.m5.huge",
            "input 'instance_type' = 'ml.m5.huge' is not a known SageMaker instance type",
        ),
        ("ml.x9.xlarge", "ml.<family>.<size>"),
        ("m5.xlarge", "did you mean 'ml.m5.xlarge'"),
        ("", "input 'instance_type' is required"),
    ],
)
def test_deploy_rejects_unknown_endpoint_instance_type(instance_type: str, message: str) -> None:
    with pytest.raises(v.InputError, match=re.escape(message)):
        sm.deploy(target(), model_name="m", instance_type=instance_type)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_s3_uri": "https://bucket.s3.amazonaws.com/x"}, "input 'input_s3_uri'"),
        ({"output_s3_uri": "s3//bucket"}, "input 'output_s3_uri'"),
        ({"model_name": ""}, "input 'model_name' is required"),
        ({"split_type": "Lines"}, "input 'split_type' = 'Lines' must be one of"),
    ],
)
def test_transform_rejects_bad_inputs(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "model_name": "m",
        "input_s3_uri": "s3://bucket/in",
        "output_s3_uri": "s3://bucket/out",
        "instance_type": "ml.m5.xlarge",
    }
    with pytest.raises(v.InputError, match=re.escape(message)):
        sm.transform(target(), **{**base, **kwargs})


def test_create_model_rejects_non_s3_model_uri() -> None:
    with pytest.raises(v.InputError, match=re.escape("input 'model' points at '/fsx/ckpt'")):
        sm.create_model(target(), image=IMAGE, role_arn=ROLE, model_data_uri="/fsx/ckpt")
    with pytest.raises(v.InputError, match="checkpoint_s3_uri"):
        sm.create_model(target(), image=IMAGE, role_arn=ROLE, model_data_uri="/fsx/ckpt")


def test_poll_interval_must_be_positive() -> None:
    bad = sm.Target(run_id="r", task_name="t", poll_seconds=0)
    with pytest.raises(v.InputError, match="poll_interval_seconds"):
        sm.process(
            bad, image=IMAGE, role_arn=ROLE, instance_type="ml.m5.xlarge", output_s3_uri="s3://b/o"
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": ""}, "input 'image' is required"),
        ({"command": []}, "input 'command' is required"),
        (
            {"instance_type": "ml.p5.48xlarge"},
            "input 'instance_type' = 'ml.p5.48xlarge' is a SageMaker type",
        ),
        (
            {"accelerator": "gpu"},
            "input 'accelerator' = 'gpu' must be one of: nvidia, neuron, none",
        ),
        ({"checkpoint_s3_uri": "s3:/b"}, "input 'checkpoint_s3_uri' = 's3:/b' is not an S3 URI"),
        ({"checkpoint_dir": "ckpt"}, "input 'checkpoint_dir' = 'ckpt' must be an absolute path"),
        ({"capacity_type": "spotty"}, "input 'capacity_type' = 'spotty' must be one of"),
        ({"efa_interfaces": "yes"}, "input 'efa_interfaces' = 'yes' must be 'auto' or a number"),
    ],
)
def test_launcher_rejects_bad_inputs(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"image": IMAGE, "command": ["python", "train.py"]}
    with pytest.raises(v.InputError, match=re.escape(message)):
        build_spec(**{**base, **kwargs})


def test_hyperparameters_are_stringified_the_way_algorithms_parse_them() -> None:
    # KFP delivers dict inputs through protobuf Struct: 6 arrives as 6.0.
    values = {"max_depth": 6.0, "eta": 0.2, "early": True, "layers": [64, 32], "name": "x"}
    assert v.string_map(values, "hyperparameters") == {
        "max_depth": "6",
        "eta": "0.2",
        "early": "true",
        "layers": "[64, 32]",
        "name": "x",
    }


@pytest.mark.parametrize(
    ("api", "instance_type", "ok"),
    [
        ("training", "ml.p6-b200.48xlarge", True),
        ("training", "ml.p5.48xlarge", True),
        ("hosting", "ml.inf2.xlarge", True),
        ("transform", "ml.m5.xlarge", True),
        ("transform", "ml.p5.48xlarge", False),
        ("processing", "ml.trn1.32xlarge", False),
    ],
)
def test_instance_types_come_from_each_apis_enum(api: str, instance_type: str, ok: bool) -> None:
    if ok:
        assert v.sagemaker_instance_type(instance_type, api=api) == instance_type
        return
    operation = v.INSTANCE_TYPE_SHAPES[api][1]
    with pytest.raises(v.InputError, match=f"but {operation} does not accept it"):
        v.sagemaker_instance_type(instance_type, api=api)


def test_transform_request_refuses_a_training_only_type() -> None:
    from kubetrain_kfp import sagemaker_requests as req

    with pytest.raises(v.InputError, match="CreateTransformJob does not accept it"):
        req.transform_request(
            model_name="m",
            input_s3_uri="s3://bucket/in",
            output_s3_uri="s3://bucket/out",
            instance_type="ml.p5.48xlarge",
            instance_count=1,
        )
