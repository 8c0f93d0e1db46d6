"""Committed KFP YAML equals what the code compiles to, and the example pipelines are wired."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def gen_kfp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_kfp", ROOT / "hack" / "gen_kfp.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_yaml_has_no_drift() -> None:
    gen = gen_kfp()
    for path, func in gen.targets().items():
        assert path.exists(), f"{path} missing: run python hack/gen_kfp.py"
        assert gen.comparable(path.read_text()) == gen.comparable(gen.compile_text(func)), (
            f"{path.relative_to(ROOT)} drifted: run python hack/gen_kfp.py"
        )


def test_sdk_version_line_is_the_only_thing_ignored() -> None:
    gen = gen_kfp()
    assert gen.comparable("sdkVersion: kfp-2.17.0\n") == gen.comparable("sdkVersion: kfp-2.18.1\n")
    assert gen.comparable("image: a\n") != gen.comparable("image: b\n")


def _spec(name: str) -> dict[str, Any]:
    path = ROOT / "components/kubetrain_kfp/pipelines/compiled" / name
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    return spec


def _tasks(name: str) -> dict[str, Any]:
    tasks: dict[str, Any] = _spec(name)["root"]["dag"]["tasks"]
    return tasks


def test_pipeline_a_passes_artifacts_step_to_step() -> None:
    spec = _spec("eks_train_sagemaker_deploy.yaml")
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    train = tasks["eks-training-job"]["inputs"]
    assert train["artifacts"]["train_data"]["taskOutputArtifact"] == {
        "outputArtifactKey": "output",
        "producerTask": "sagemaker-processing",
    }
    assert train["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert tasks["eks-training-job"]["retryPolicy"]["maxRetryCount"] == 2
    model = tasks["sagemaker-create-model"]["inputs"]["artifacts"]["model"]
    assert model["taskOutputArtifact"]["producerTask"] == "eks-training-job"
    deploy = tasks["sagemaker-deploy"]["inputs"]["parameters"]["model_name"]
    assert deploy["taskOutputParameter"]["producerTask"] == "sagemaker-create-model"


def test_pipeline_a_reaps_the_run_whatever_happens() -> None:
    reaper = _tasks("eks_train_sagemaker_deploy.yaml")["cleanup-run"]
    assert reaper["dependentTasks"] == ["exit-handler-1"]
    assert reaper["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    run_id = reaper["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"


def test_pipeline_b_is_spot_training_then_transform() -> None:
    tasks = _tasks("spot_training_batch_transform.yaml")
    train = tasks["sagemaker-training"]["inputs"]["parameters"]
    assert train["spot"]["runtimeValue"]["constant"] is True
    transform = tasks["sagemaker-batch-transform"]["inputs"]["parameters"]["model_name"]
    assert transform["taskOutputParameter"]["producerTask"] == "sagemaker-create-model"
