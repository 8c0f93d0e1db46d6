"""VPC, KMS and network isolation land where each SageMaker API wants them; the escape hatch
merges unmodelled fields but refuses typos and the fields that make retries and cleanup work."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kubetrain_kfp import validate as v
from kubetrain_kfp.sagemaker_security import Security, merge_extra

SUBNET, SG = "subnet-0123456789abcdef0", "sg-0123456789abcdef0"
KEY = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
SECURE = Security.of(
    subnets=[SUBNET],
    security_group_ids=[SG],
    kms_key_id=KEY,
    volume_kms_key_id="alias/ml-volumes",
    network_isolation=True,
    inter_container_encryption=True,
)


def test_training_fields() -> None:
    base: dict[str, Any] = {
        "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge"},
    }
    assert SECURE.training(base) == {
        "OutputDataConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": KEY},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "VolumeKmsKeyId": "alias/ml-volumes"},
        "VpcConfig": {"SecurityGroupIds": [SG], "Subnets": [SUBNET]},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
    }
    assert "VpcConfig" not in base  # the input is not modified


def test_processing_fields() -> None:
    base: dict[str, Any] = {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1}},
        "ProcessingOutputConfig": {"Outputs": []},
    }
    assert SECURE.processing(base) == {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "VolumeKmsKeyId": "alias/ml-volumes"}
        },
        "ProcessingOutputConfig": {"Outputs": [], "KmsKeyId": KEY},
        "NetworkConfig": {
            "VpcConfig": {"SecurityGroupIds": [SG], "Subnets": [SUBNET]},
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
        },
    }


def test_nothing_asked_nothing_added() -> None:
    assert Security().training({"A": 1}) == {"A": 1}
    assert Security().processing({"A": 1}) == {"A": 1}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"subnets": [SUBNET]}, "go together"),
        ({"subnets": ["subnet-x"], "security_group_ids": [SG]}, "not a subnet id"),
        ({"subnets": [SUBNET], "security_group_ids": ["default"]}, "not a security group id"),
        ({"kms_key_id": "my-key"}, "input 'kms_key_id' = 'my-key' is not a KMS key"),
    ],
)
def test_bad_security_inputs_name_the_input(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(v.InputError, match=words):
        Security.of(**kwargs)


def test_extra_request_merges_objects_and_replaces_values() -> None:
    request = {"ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}}
    extra = {
        "ResourceConfig": {"KeepAlivePeriodInSeconds": 600, "InstanceCount": 2},
        "RetryStrategy": {"MaximumRetryAttempts": 3},
    }
    assert merge_extra(request, extra, "CreateTrainingJob") == {
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 2,
            "KeepAlivePeriodInSeconds": 600,
        },
        "RetryStrategy": {"MaximumRetryAttempts": 3},
    }


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"RetryStrategie": {}}, "has no field 'RetryStrategie' (did you mean RetryStrategy?)"),
        ({"TrainingJobName": "mine"}, "may not set TrainingJobName"),
        ({"Tags": []}, "may not set Tags"),
    ],
)
def test_extra_request_refuses_typos_and_owned_fields(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(v.InputError, match=re.escape(words)):
        merge_extra({}, extra, "CreateTrainingJob")
