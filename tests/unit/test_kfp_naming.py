"""Deterministic names follow each service's rules; duplicated constants match the operator's."""

from __future__ import annotations

import re

import pytest

from kubetrain.api import constants as operator_constants
from kubetrain_kfp import constants, naming

SAGEMAKER_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONG_TASK = "Train_the VERY-long task name " * 5


@pytest.mark.parametrize("task", ["train", "eks-training-job", LONG_TASK, "x", ""])
@pytest.mark.parametrize("run_id", ["0c7a8f7e-1b1e-4bb8-9a65-1a2b3c4d5e6f", "41581323"])
def test_names_are_stable_and_valid(run_id: str, task: str) -> None:
    sm = naming.sagemaker_name("train", run_id, task)
    k8s = naming.k8s_name("kt", run_id, task)
    assert sm == naming.sagemaker_name("train", run_id, task)  # a retry gets the same name
    assert k8s == naming.k8s_name("kt", run_id, task)
    assert SAGEMAKER_RE.match(sm) and len(sm) <= 63
    assert DNS1035_RE.match(k8s) and len(k8s) <= naming.K8S_MAX
    assert len(naming.sagemaker_name("tune", run_id, task, 32)) <= 32


def test_names_differ_by_run_and_task() -> None:
    names = {
        naming.sagemaker_name("train", run, task)
        for run in ("run-a", "run-b")
        for task in ("train", "train-2")
    }
    assert len(names) == 4
    assert naming.k8s_name("kt", "run-a", "train") != naming.k8s_name("kt", "run-b", "train")


@pytest.mark.parametrize(
    ("run_id", "task", "needle"),
    [
        ("", "train", "run_id"),
        ("{{$.pipeline_job_uuid}}", "t", "run_id"),
        ("r", "{{$.x}}", "task_name"),
    ],
)
def test_unresolved_seed_is_an_input_error(run_id: str, task: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        naming.sagemaker_name("train", run_id, task)


def test_k8s_name_fits_the_operator_limit() -> None:
    from kubetrain.api.models import MAX_JOB_NAME

    assert naming.K8S_MAX <= MAX_JOB_NAME


@pytest.mark.parametrize(
    "name",
    [
        "GROUP",
        "VERSION",
        "API_VERSION",
        "KIND",
        "PLURAL",
        "PREFIX",
        "COND_SUCCEEDED",
        "COND_FAILED",
        "ENV_EXPORT_URI",
    ],
)
def test_duplicated_constants_match_the_operator(name: str) -> None:
    assert getattr(constants, name) == getattr(operator_constants, name)
