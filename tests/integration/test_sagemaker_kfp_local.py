"""KFP wrappers under kfp.local (SubprocessRunner, this venv) against moto: the README snippet
runs as written, artifacts flow between steps, and a re-run task reattaches."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import moto_sagemaker as fake
import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "components/kubetrain_kfp/examples/readme_snippet.py"


def test_readme_snippet_runs_pipeline_b(aws_env: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SNIPPET)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "predictions: s3://my-ml-bucket/predictions" in proc.stdout

    # Follow the artifacts through moto: transform <- model <- spot training job.
    backend = fake.backend()
    transforms = [
        j
        for j in backend.transform_jobs.values()
        if j.transform_output["S3OutputPath"].endswith("/predictions")
    ]
    assert len(transforms) >= 1
    model = backend._models[transforms[-1].model_name]
    train_name = model.primary_container["ModelDataUrl"].split("/")[-3]
    training = backend.training_jobs[train_name]
    assert model.primary_container["ModelDataUrl"] == training.model_artifacts["S3ModelArtifacts"]
    assert training.enable_managed_spot_training is True
    assert (
        training.stopping_condition["MaxWaitTimeInSeconds"]
        >= training.stopping_condition["MaxRuntimeInSeconds"]
    )
    assert training.hyper_parameters == {"max_depth": "6", "eta": "0.2", "num_round": "100"}


def test_rerun_of_the_same_task_reattaches(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kfp import local

    from kubetrain_kfp.components import sagemaker_training

    creates = fake.count_creates(monkeypatch)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "outputs"),
        workspace_root=str(tmp_path / "ws"),
        raise_on_error=True,
    )
    run_id = str(uuid.uuid4())
    args = dict(
        image=fake.IMAGE,
        role_arn=fake.ROLE,
        instance_type="ml.m5.xlarge",
        output_s3_uri="s3://bucket/models",
        hyperparameters={"epochs": 1},
        run_id=run_id,
        task_name="train",
        poll_interval_seconds=0.2,
    )
    first = sagemaker_training(**args)
    second = sagemaker_training(**args)
    assert first.outputs["job_name"] == second.outputs["job_name"]
    assert first.outputs["model"].uri == second.outputs["model"].uri
    assert first.outputs["model"].uri.startswith("s3://bucket/models/")
    assert first.outputs["metrics"].metadata["train:progress"] == 100.0
    assert creates["create_training_job"] == 1
