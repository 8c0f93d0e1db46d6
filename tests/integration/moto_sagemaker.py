"""Drive moto's SageMaker backend from tests (moto serves in this process; see tests/conftest.py).

moto finishes every SageMaker job at creation and lacks some APIs. Instead of patching boto3 in the
code under test, tests change the fake server: hold new jobs InProgress, flip statuses, count
creates, and add the missing stop_*/update_endpoint actions to moto's own response class.
Missing in moto 5.2.5: stop_training_job, stop_transform_job, stop_hyper_parameter_tuning_job,
update_endpoint (stop_processing_job exists).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import EmptyResult
from moto.sagemaker import models
from moto.sagemaker.responses import SageMakerResponse

REGION = "us-west-2"  # tests/conftest.py aws_env
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/train:1"

_TABLES = {
    "training": ("training_jobs", "training_job_status", models.FakeTrainingJob),
    "processing": ("processing_jobs", "processing_job_status", models.FakeProcessingJob),
    "transform": ("transform_jobs", "transform_job_status", models.FakeTransformJob),
    "tuning": (
        "hyper_parameter_tuning_jobs",
        "hyper_parameter_tuning_job_status",
        models.HyperParameterTuningJob,
    ),
}


def backend() -> Any:
    return models.sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]


def job(kind: str, name: str) -> Any:
    table, _, _ = _TABLES[kind]
    return getattr(backend(), table).get(name)


def status(kind: str, name: str) -> str | None:
    fake = job(kind, name)
    return None if fake is None else str(getattr(fake, _TABLES[kind][1]))


def set_status(kind: str, name: str, value: str, failure_reason: str | None = None) -> None:
    fake = job(kind, name)
    setattr(fake, _TABLES[kind][1], value)
    if failure_reason is not None:
        fake.failure_reason = failure_reason


@contextmanager
def hold_in_progress(monkeypatch: pytest.MonkeyPatch, *kinds: str) -> Iterator[None]:
    """New jobs of `kinds` start InProgress (as on AWS) until the test moves them on."""
    for kind in kinds:
        _, field, cls = _TABLES[kind]
        original = cls.__init__

        def init(self: Any, *a: Any, _orig: Any = original, _f: str = field, **kw: Any) -> None:
            _orig(self, *a, **kw)
            setattr(self, _f, "InProgress")

        monkeypatch.setattr(cls, "__init__", init)
    yield


def count_creates(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count create_* calls reaching the fake server (moto silently accepts duplicate names)."""
    calls: Counter[str] = Counter()
    for method in (
        "create_training_job",
        "create_processing_job",
        "create_transform_job",
        "create_hyper_parameter_tuning_job",
        "create_model",
        "create_endpoint",
        "create_endpoint_config",
    ):
        original = getattr(models.SageMakerModelBackend, method)

        def wrapped(self: Any, *a: Any, _o: Any = original, _m: str = method, **kw: Any) -> Any:
            calls[_m] += 1
            return _o(self, *a, **kw)

        monkeypatch.setattr(models.SageMakerModelBackend, method, wrapped)
    return calls


def add_missing_apis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve stop_training_job / stop_transform_job / stop_hyper_parameter_tuning_job /
    update_endpoint from the fake server, with the status changes SageMaker makes."""

    def stopper(kind: str, param: str) -> Any:
        def action(self: SageMakerResponse) -> EmptyResult:
            name = self._get_param(param)
            set_status(kind, name, "Stopped", failure_reason="stopped by request")
            return EmptyResult()

        return action

    def update_endpoint(self: SageMakerResponse) -> Any:
        from moto.core.responses import ActionResult

        name = self._get_param("EndpointName")
        endpoint = backend().endpoints[name]
        endpoint.endpoint_config_name = self._get_param("EndpointConfigName")
        endpoint.endpoint_status = "InService"
        return ActionResult({"EndpointArn": endpoint.arn})

    patches = {
        "stop_training_job": stopper("training", "TrainingJobName"),
        "stop_transform_job": stopper("transform", "TransformJobName"),
        "stop_hyper_parameter_tuning_job": stopper("tuning", "HyperParameterTuningJobName"),
        "update_endpoint": update_endpoint,
    }
    for name, fn in patches.items():
        monkeypatch.setattr(SageMakerResponse, name, fn, raising=False)
