"""SageMaker job components against moto in server mode: outputs, reattach, logs, failure."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import boto3
import moto_sagemaker as fake
import pytest

from kubetrain_kfp import sagemaker as sm
from kubetrain_kfp.sagemaker_jobs import JobFailed
from support import wait_for

POLL = 0.2


def now_ms() -> int:
    return int(time.time() * 1000)


def target(**kw: Any) -> sm.Target:
    return sm.Target(
        run_id=str(uuid.uuid4()), task_name=kw.pop("task", "train"), poll_seconds=POLL, **kw
    )


def train_kwargs(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": fake.IMAGE,
        "role_arn": fake.ROLE,
        "instance_type": "ml.g5.2xlarge",
        "output_s3_uri": "s3://bucket/models",
        "channels": {"train": "s3://bucket/data/train"},
        "hyperparameters": {"epochs": 3, "lr": 0.01, "layers": [64, 32]},
    }
    return {**base, **kw}


def test_spot_training_outputs_model_and_request(aws_env: str) -> None:
    t = target()
    result = sm.train(t, **train_kwargs(spot=True, max_runtime_seconds=3600, max_wait_seconds=7200))

    name = t.name("train")
    assert result.job_name == name
    assert result.output_uri == f"s3://bucket/models/{name}/output/model.tar.gz"
    assert result.metrics["train:progress"] == 100.0
    job = fake.job("training", name)
    assert job.enable_managed_spot_training is True
    assert job.stopping_condition == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    # Spot without an explicit location checkpoints under the deterministic job name.
    assert job.checkpoint_config["S3Uri"] == f"s3://bucket/models/{name}/checkpoints"
    assert job.hyper_parameters == {"epochs": "3", "lr": "0.01", "layers": "[64, 32]"}
    assert result.metadata["checkpoint_s3_uri"] == job.checkpoint_config["S3Uri"]


def test_retry_reattaches_instead_of_creating(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    creates = fake.count_creates(monkeypatch)
    t = target()
    first = sm.train(t, **train_kwargs())
    second = sm.train(t, **train_kwargs())  # a KFP retry: same run id and task name
    assert second.job_name == first.job_name
    assert second.output_uri == first.output_uri
    assert creates["create_training_job"] == 1


def test_waits_for_running_job_and_streams_logs(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    t = target()
    name = t.name("train")
    results: list[sm.JobResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(sm.train(t, **train_kwargs()))
        except BaseException as exc:
            errors.append(exc)

    logs = boto3.client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    with fake.hold_in_progress(monkeypatch, "training"):
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        wait_for(lambda: fake.status("training", name) == "InProgress", what="job created")
        stream = f"{name}/algo-1-1700000000"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": now_ms(), "message": "epoch 1 loss=0.9"}],
        )
        wait_for(lambda: "epoch 1 loss=0.9" in caplog.text, what="first log line streamed")
        # Still waiting: the job is InProgress, the component has not returned.
        assert worker.is_alive() and not results
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": now_ms(), "message": "epoch 2 loss=0.5"}],
        )
        wait_for(lambda: "epoch 2 loss=0.5" in caplog.text, what="second log line streamed")
        fake.set_status("training", name, "Completed")
        worker.join(timeout=30)
    assert not errors and results[0].job_name == name
    assert caplog.text.count("epoch 1 loss=0.9") == 1  # read once, from the head, with tokens


def test_failed_job_fails_with_its_reason(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = target()
    name = t.name("train")
    with fake.hold_in_progress(monkeypatch, "training"):
        boto3.client("sagemaker").create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": fake.IMAGE, "TrainingInputMode": "File"},
            RoleArn=fake.ROLE,
            OutputDataConfig={"S3OutputPath": "s3://bucket/models"},
            ResourceConfig={
                "InstanceType": "ml.m5.xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 5,
            },
            StoppingCondition={"MaxRuntimeInSeconds": 60},
        )
    fake.set_status("training", name, "Failed", failure_reason="AlgorithmError: CUDA OOM")
    with pytest.raises(JobFailed, match="AlgorithmError: CUDA OOM"):
        sm.train(t, **train_kwargs())


def test_processing_outputs_dataset_uri(aws_env: str) -> None:
    t = target(task="prep")
    result = sm.process(
        t,
        image=fake.IMAGE,
        role_arn=fake.ROLE,
        instance_type="ml.m5.xlarge",
        input_s3_uri="s3://bucket/raw",
        output_s3_uri="s3://bucket/prepared",
        entrypoint=["python", "prep.py"],
    )
    assert result.output_uri == "s3://bucket/prepared"
    assert fake.status("processing", result.job_name) == "Completed"
    assert fake.job("processing", result.job_name).app_specification["ContainerEntrypoint"] == [
        "python",
        "prep.py",
    ]


def test_tuning_outputs_best_model(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    creates = fake.count_creates(monkeypatch)
    t = target(task="hpo")
    kwargs: dict[str, Any] = {
        "image": fake.IMAGE,
        "role_arn": fake.ROLE,
        "instance_type": "ml.g5.xlarge",
        "output_s3_uri": "s3://bucket/hpo",
        "channels": {"train": "s3://bucket/data"},
        "static_hyperparameters": {"epochs": 2},
        "parameter_ranges": {
            "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1"}]
        },
        "objective_metric": "validation:accuracy",
        "metric_regex": {"validation:accuracy": "acc=([0-9.]+)"},
    }
    result = sm.tune(t, **kwargs)
    again = sm.tune(t, **kwargs)
    assert len(result.job_name) <= 32
    assert again.job_name == result.job_name and creates["create_hyper_parameter_tuning_job"] == 1
    best = result.metadata["best_training_job_name"]
    assert best and result.output_uri == f"s3://bucket/hpo/{best}/output/model.tar.gz"


def test_model_then_transform(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    creates = fake.count_creates(monkeypatch)
    run_id = str(uuid.uuid4())
    mt = sm.Target(run_id=run_id, task_name="model", poll_seconds=POLL)
    model = sm.create_model(
        mt, image=fake.IMAGE, role_arn=fake.ROLE, model_data_uri="s3://bucket/m/model.tar.gz"
    )
    assert (
        sm.create_model(
            mt, image=fake.IMAGE, role_arn=fake.ROLE, model_data_uri="s3://bucket/m/model.tar.gz"
        ).job_name
        == model.job_name
    )
    assert creates["create_model"] == 1
    with pytest.raises(JobFailed, match="already exists with model data"):
        sm.create_model(
            mt, image=fake.IMAGE, role_arn=fake.ROLE, model_data_uri="s3://bucket/other.tar.gz"
        )
    tt = sm.Target(run_id=run_id, task_name="score", poll_seconds=POLL)
    out = sm.transform(
        tt,
        model_name=model.job_name,
        input_s3_uri="s3://bucket/batch-in",
        output_s3_uri="s3://bucket/batch-out",
        instance_type="ml.c5.xlarge",
        content_type="text/csv",
        split_type="Line",
    )
    assert out.output_uri == "s3://bucket/batch-out"
    assert fake.job("transform", out.job_name).model_name == model.job_name
