"""The exit-handler backstop stops exactly the SageMaker jobs this run left running (moto)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import moto_sagemaker as fake
import pytest

from kubetrain_kfp import reaper
from kubetrain_kfp.sagemaker_requests import tags


def create_training(client: Any, name: str, run_id: str) -> None:
    client.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": fake.IMAGE, "TrainingInputMode": "File"},
        RoleArn=fake.ROLE,
        OutputDataConfig={"S3OutputPath": "s3://bucket/models"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        Tags=tags(run_id, "train"),
    )


def create_processing(client: Any, name: str, run_id: str) -> None:
    client.create_processing_job(
        ProcessingJobName=name,
        ProcessingResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 5,
            }
        },
        AppSpecification={"ImageUri": fake.IMAGE},
        RoleArn=fake.ROLE,
        Tags=tags(run_id, "prep"),
    )


def test_reaper_stops_only_this_runs_unfinished_jobs(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_missing_apis(monkeypatch)  # stop_training_job is not in moto
    client = boto3.client("sagemaker")
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    n = uuid.uuid4().hex[:8]
    with fake.hold_in_progress(monkeypatch, "training", "processing"):
        create_training(client, f"mine-train-{n}", mine)
        create_processing(client, f"mine-prep-{n}", mine)
        create_training(client, f"mine-done-{n}", mine)
        create_training(client, f"other-train-{n}", other)
    fake.set_status("training", f"mine-done-{n}", "Completed")

    stopped = reaper.reap_sagemaker(client, mine)

    assert sorted(stopped) == sorted([f"mine-train-{n}", f"mine-prep-{n}"])
    assert fake.status("training", f"mine-train-{n}") == "Stopped"
    assert fake.status("processing", f"mine-prep-{n}") == "Stopped"
    assert fake.status("training", f"mine-done-{n}") == "Completed"
    assert fake.status("training", f"other-train-{n}") == "InProgress"
    assert reaper.reap_sagemaker(client, mine) == []  # nothing left on a second pass
