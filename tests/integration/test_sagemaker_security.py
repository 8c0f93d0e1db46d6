"""VPC, KMS, network isolation and the escape hatch reach SageMaker (moto in server mode)."""

from __future__ import annotations

import uuid

import moto_sagemaker as fake

from kubetrain_kfp import sagemaker as sm

SUBNET, SG = "subnet-0123456789abcdef0", "sg-0123456789abcdef0"
KEY = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
SECURE = sm.Security.of(
    subnets=[SUBNET],
    security_group_ids=[SG],
    kms_key_id=KEY,
    volume_kms_key_id="alias/ml-volumes",
    network_isolation=True,
)


def target(task: str) -> sm.Target:
    return sm.Target(run_id=str(uuid.uuid4()), task_name=task, poll_seconds=0.2)


def test_training_job_in_a_vpc_with_keys_isolation_and_extra_fields(aws_env: str) -> None:
    result = sm.train(
        target("train"),
        image=fake.IMAGE,
        role_arn=fake.ROLE,
        instance_type="ml.m5.xlarge",
        output_s3_uri="s3://bucket/models",
        channels={},
        hyperparameters={},
        security=SECURE,
        extra_request={"ResourceConfig": {"KeepAlivePeriodInSeconds": 600}},
    )
    job = fake.job("training", result.job_name)
    assert job.vpc_config == {"SecurityGroupIds": [SG], "Subnets": [SUBNET]}
    assert job.enable_network_isolation is True
    assert job.output_data_config["KmsKeyId"] == KEY
    assert job.resource_config["VolumeKmsKeyId"] == "alias/ml-volumes"
    assert job.resource_config["KeepAlivePeriodInSeconds"] == 600


def test_processing_job_network_config(aws_env: str) -> None:
    result = sm.process(
        target("prep"),
        image=fake.IMAGE,
        role_arn=fake.ROLE,
        instance_type="ml.m5.xlarge",
        input_s3_uri="s3://bucket/raw",
        output_s3_uri="s3://bucket/prepared",
        security=SECURE,
    )
    job = fake.job("processing", result.job_name)
    assert job.network_config["VpcConfig"] == {"SecurityGroupIds": [SG], "Subnets": [SUBNET]}
    assert job.network_config["EnableNetworkIsolation"] is True
    assert job.processing_output_config["KmsKeyId"] == KEY
