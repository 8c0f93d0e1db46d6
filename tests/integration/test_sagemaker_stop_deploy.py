"""SIGTERM stops the SageMaker job; deploy creates, reattaches and updates an endpoint."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid

import moto_sagemaker as fake
import pytest

from kubetrain_kfp import sagemaker as sm
from kubetrain_kfp.constants import EXIT_TERMINATED
from support import wait_for

_SCRIPTS = {
    "processing": """
        sm.process(t, image=IMAGE, role_arn=ROLE, instance_type="ml.m5.xlarge",
                   output_s3_uri="s3://bucket/out")
    """,
    "training": """
        sm.train(t, image=IMAGE, role_arn=ROLE, instance_type="ml.p4d.24xlarge",
                 output_s3_uri="s3://bucket/models", channels={}, hyperparameters={},
                 spot=True, max_runtime_seconds=60, max_wait_seconds=120)
    """,
    "transform": """
        sm.transform(t, model_name="m", input_s3_uri="s3://bucket/in",
                     output_s3_uri="s3://bucket/out", instance_type="ml.c5.xlarge")
    """,
}
_PREFIX = {"processing": "process", "training": "train", "transform": "transform"}


@pytest.mark.parametrize("kind", sorted(_SCRIPTS))
def test_sigterm_stops_the_job_and_exits_nonzero(
    kind: str, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_missing_apis(monkeypatch)  # stop_training_job / stop_transform_job (not in moto)
    run_id = str(uuid.uuid4())
    name = sm.Target(run_id=run_id, task_name=kind).name(_PREFIX[kind])
    code = textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.INFO)
        from kubetrain_kfp import sagemaker as sm
        IMAGE, ROLE = {fake.IMAGE!r}, {fake.ROLE!r}
        t = sm.Target(run_id={run_id!r}, task_name={kind!r}, poll_seconds=0.2)
        """
    ) + textwrap.dedent(_SCRIPTS[kind])
    with fake.hold_in_progress(monkeypatch, kind):
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: fake.status(kind, name) == "InProgress", what=f"{kind} job running")
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == EXIT_TERMINATED, stderr
    assert fake.status(kind, name) == "Stopped"
    assert f"requested stop of {kind} job {name}" in stderr


def test_deploy_creates_reattaches_and_updates(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_missing_apis(monkeypatch)  # update_endpoint is not in moto
    creates = fake.count_creates(monkeypatch)
    run_id = str(uuid.uuid4())
    t = sm.Target(run_id=run_id, task_name="deploy", poll_seconds=0.2)
    models = [
        sm.create_model(
            sm.Target(run_id=run_id, task_name=f"model-{i}"),
            image=fake.IMAGE,
            role_arn=fake.ROLE,
            model_data_uri=f"s3://bucket/m{i}/model.tar.gz",
        ).job_name
        for i in (1, 2)
    ]
    endpoint = f"ep-{run_id[:8]}"
    first = sm.deploy(
        t, model_name=models[0], instance_type="ml.g4dn.xlarge", endpoint_name=endpoint
    )
    backend = fake.backend()
    assert first.job_name == endpoint
    assert backend.endpoints[endpoint].endpoint_status == "InService"
    config = first.metadata["endpoint_config_name"]
    assert backend.endpoint_configs[config].production_variants[0]["ModelName"] == models[0]

    again = sm.deploy(
        t, model_name=models[0], instance_type="ml.g4dn.xlarge", endpoint_name=endpoint
    )
    assert again.metadata == first.metadata
    assert creates["create_endpoint"] == 1 and creates["create_endpoint_config"] == 1

    updated = sm.deploy(
        t, model_name=models[1], instance_type="ml.g4dn.xlarge", endpoint_name=endpoint
    )
    new_config = updated.metadata["endpoint_config_name"]
    assert new_config != config
    assert backend.endpoints[endpoint].endpoint_config_name == new_config
    assert creates["create_endpoint"] == 1  # updated in place, not recreated


def test_deploy_fails_with_endpoint_failure_reason(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = str(uuid.uuid4())
    model = sm.create_model(
        sm.Target(run_id=run_id, task_name="model"),
        image=fake.IMAGE,
        role_arn=fake.ROLE,
        model_data_uri="s3://bucket/m/model.tar.gz",
    ).job_name
    original = fake.models.FakeEndpoint.__init__

    def failing(self: object, *a: object, **kw: object) -> None:
        original(self, *a, **kw)  # type: ignore[arg-type]
        self.endpoint_status = "Failed"  # type: ignore[attr-defined]
        self.failure_reason = "ResourceLimitExceeded: ml.p3.2xlarge quota is 0"  # type: ignore[attr-defined]

    monkeypatch.setattr(fake.models.FakeEndpoint, "__init__", failing)
    with pytest.raises(sm.JobFailed, match="ResourceLimitExceeded"):
        sm.deploy(
            sm.Target(run_id=run_id, task_name="deploy", poll_seconds=0.2),
            model_name=model,
            instance_type="ml.p3.2xlarge",
        )


def test_timeout_stops_the_job(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = sm.Target(run_id=str(uuid.uuid4()), task_name="prep", poll_seconds=0.2, timeout_seconds=1)
    with (
        fake.hold_in_progress(monkeypatch, "processing"),
        pytest.raises(sm.JobTimeout, match="timeout_seconds=1"),
    ):
        sm.process(
            t,
            image=fake.IMAGE,
            role_arn=fake.ROLE,
            instance_type="ml.m5.xlarge",
            output_s3_uri="s3://bucket/out",
        )
    assert fake.status("processing", t.name("process")) == "Stopped"
