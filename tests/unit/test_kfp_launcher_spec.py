"""EKS launcher builders: inputs -> TrainingJob manifest, finished job -> outputs, timeline."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrain.client.views import JobView, Timeline
from kubetrain_kfp.constants import ANNOTATION_KFP_SPEC_HASH, LABEL_KFP_RUN, LABEL_KFP_TASK
from kubetrain_kfp.launcher_spec import build_manifest, build_spec, model_location, outcome
from kubetrain_kfp.naming import spec_hash
from kubetrain_kfp.validate import InputError

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/llama:1"


def test_essentials_become_the_spec() -> None:
    spec = build_spec(
        image=IMAGE,
        command=["python", "train.py"],
        nodes=4,
        instance_type="trn1.32xlarge",
        accelerator="neuron",
        efa_interfaces="auto",
        fsx_claim_name="fsx-pvc",
        fsx_mount_path="/fsx",
        checkpoint_dir="/fsx/ckpt/llama",
        checkpoint_s3_uri="s3://bucket/llama",
        capacity_type="spot",
        max_restarts=3,
        max_interruptions=20,
        env={"EPOCHS": 2},
    )
    assert spec == {
        "image": IMAGE,
        "command": ["python", "train.py"],
        "nodes": 4,
        "accelerator": {"kind": "neuron", "instanceType": "trn1.32xlarge"},
        "efa": {"interfaces": "auto"},
        "storage": {"fsx": {"claimName": "fsx-pvc", "mountPath": "/fsx"}},
        "checkpoint": {"dir": "/fsx/ckpt/llama", "s3Uri": "s3://bucket/llama"},
        "capacity": {"type": "spot"},
        "failurePolicy": {"maxRestarts": 3, "maxInterruptions": 20},
        "env": [{"name": "EPOCHS", "value": "2"}],
    }


def test_full_spec_is_the_base_and_given_inputs_win() -> None:
    base: dict[str, Any] = {
        "image": "old",
        "command": ["torchrun", "t.py"],
        "accelerator": {"kind": "nvidia", "perNode": 8},
        "failurePolicy": {"maxRestarts": 1, "backoffSeconds": 5},
        "startupTimeoutSeconds": 600,
    }
    spec = build_spec(image=IMAGE, instance_type="p5.48xlarge", max_restarts=5, base_spec=base)
    assert spec == {
        "image": IMAGE,
        "command": ["torchrun", "t.py"],
        "accelerator": {"kind": "nvidia", "perNode": 8, "instanceType": "p5.48xlarge"},
        "failurePolicy": {"maxRestarts": 5, "backoffSeconds": 5},
        "startupTimeoutSeconds": 600,
    }
    assert base["image"] == "old"  # the caller's dict is not mutated


def test_manifest_carries_run_labels_and_spec_hash() -> None:
    spec = build_spec(image=IMAGE, command=["x"])
    manifest = build_manifest("kt-train-abc", "ml", spec, "run-1", "eks-training-job")
    assert manifest == {
        "apiVersion": "kubetrain.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "kt-train-abc",
            "namespace": "ml",
            "labels": {LABEL_KFP_RUN: "run-1", LABEL_KFP_TASK: "eks-training-job"},
            "annotations": {ANNOTATION_KFP_SPEC_HASH: spec_hash(spec)},
        },
        "spec": spec,
    }


FINISHED: dict[str, Any] = {
    "metadata": {"name": "kt-a", "namespace": "ml"},
    "spec": {"image": IMAGE, "nodes": 2, "checkpoint": {"s3Uri": "s3://b/ck", "dir": "/fsx/ck"}},
    "status": {
        "phase": "Succeeded",
        "attempt": 3,
        "restarts": {"failures": 1, "interruptions": 2},
        "checkpoint": {
            "step": 1200,
            "uri": "/fsx/ck/manifests/step-000000001200-x.json",  # rank 0 reports its own tier
            "kind": "emergency",
        },
        "interruptions": [
            {
                "node": "n1",
                "source": "spot-itn",
                "detectedAt": "2026-01-01T00:10:00Z",
                "lostSteps": 1,
            },
            {
                "node": "n2",
                "source": "node-lost",
                "detectedAt": "2026-01-01T00:20:00Z",
                "lostSteps": 0,
            },
        ],
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T01:00:30Z",
    },
}


def test_outcome_reports_newest_checkpoint_and_metrics() -> None:
    out = outcome(FINISHED)
    # The job mirrors to S3: the Model is that copy of the committed checkpoint, not the FSx path.
    assert out.model_uri == "s3://b/ck/data/step-000000001200-x/"
    assert out.metrics == {
        "attempts": 3.0,
        "interruptions": 2.0,
        "failures": 1.0,
        "lost_steps": 1.0,
        "wall_seconds": 3630.0,
        "checkpoint_step": 1200.0,
    }
    assert out.job_name == "kt-a" and out.phase == "Succeeded"


def test_outcome_prefers_export_then_falls_back_to_spec() -> None:
    assert outcome(FINISHED, export_uri="s3://b/model.tar.gz").model_uri == "s3://b/model.tar.gz"
    bare = {**FINISHED, "status": {"phase": "Succeeded"}}
    assert outcome(bare).model_uri == "s3://b/ck"
    assert outcome(bare, watched_seconds=12.5).metrics["wall_seconds"] == 12.5


def test_timeline_logs_each_change_once() -> None:
    timeline = Timeline()
    first = timeline.changes(JobView.from_object(FINISHED))
    assert first[0] == "phase - -> Succeeded (attempt 3)"
    assert sum("interruption on node" in line for line in first) == 2
    assert timeline.changes(JobView.from_object(FINISHED)) == []
    more = {
        **FINISHED,
        "status": {
            **FINISHED["status"],
            "conditions": [{"type": "Ready", "status": "False", "reason": "Restarting"}],
        },
    }
    assert timeline.changes(JobView.from_object(more)) == [
        "condition Ready=False reason=Restarting"
    ]


@pytest.mark.parametrize(
    ("checkpoint", "committed", "export", "expected"),
    [
        ({"s3Uri": "s3://b/ck"}, "/fsx/c/manifests/step-000000000040-ab.json", "",
         "s3://b/ck/data/step-000000000040-ab/"),
        ({"s3Uri": "s3://b/ck/"}, "s3://b/ck/manifests/step-000000000040-ab.json", "",
         "s3://b/ck/data/step-000000000040-ab/"),
        ({"s3Uri": "s3://b/ck"}, "/fsx/c/manifests/step-000000000040-ab.json", "s3://m/model.tar.gz",
         "s3://m/model.tar.gz"),
        ({"dir": "/fsx/c"}, "/fsx/c/manifests/step-000000000040-ab.json", "",
         "/fsx/c/manifests/step-000000000040-ab.json"),
        ({"s3Uri": "s3://b/ck"}, "", "", "s3://b/ck"),
    ],
)  # fmt: skip
def test_model_output_is_the_export_else_the_checkpoint_in_s3(
    checkpoint: dict[str, str], committed: str, export: str, expected: str
) -> None:
    status = {"checkpoint": {"uri": committed, "step": 40}} if committed else {}
    assert model_location({"checkpoint": checkpoint}, status, export) == expected


def test_export_uri_reaches_the_job_through_the_environment() -> None:
    base = {"env": [{"name": "A", "value": "1"}]}
    spec = build_spec(
        image=IMAGE, command=["python"], base_spec=base, export_uri="s3://models/m.tar.gz"
    )
    assert spec["env"] == [
        {"name": "A", "value": "1"},
        {"name": "MODEL_EXPORT_URI", "value": "s3://models/m.tar.gz"},
    ]
    with pytest.raises(InputError, match="export_uri"):
        build_spec(image=IMAGE, command=["python"], export_uri="/fsx/model")


def test_whole_numbers_from_a_kfp_struct_become_integers_again() -> None:
    base = {"failurePolicy": {"maxRestarts": 0.0, "backoffSeconds": 30.0}, "nodes": 2.0}
    spec = build_spec(image=IMAGE, command=["python"], base_spec=base)
    assert spec["failurePolicy"] == {"maxRestarts": 0, "backoffSeconds": 30}
    assert isinstance(spec["nodes"], int)
