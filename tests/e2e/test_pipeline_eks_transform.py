"""Pipeline (c) end to end under kfp.local: EKS training -> SageMaker model -> batch transform.

The TrainingJob runs real training processes (the stand-in kubelet runs tests/e2e/toy_train.py
per pod) that checkpoint to the job's directory and mirror to S3 on moto. The training step's
Model output must be that committed checkpoint's S3 copy, the SageMaker model must be built from
it and the batch transform must use that model, with no run id or task name passed by hand.
"""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from local_kubelet import LocalKubelet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cluster import Cluster
from kubetrain.client import TrainingJobClient
from support import SIM_FSX_POD_TEMPLATE, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
TOY = Path(__file__).with_name("toy_train.py")
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def test_eks_training_feeds_sagemaker_model_and_batch_transform(
    cluster: Cluster, namespace: str, operator: None, aws_env: str, tmp_path: Path
) -> None:
    import boto3
    from kfp import local
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    from kubetrain_kfp.pipelines.eks_training_transform import eks_train_batch_transform

    tag = uuid.uuid4().hex[:8]
    s3 = boto3.client("s3", endpoint_url=aws_env)
    for bucket in (f"ckpt-{tag}", f"data-{tag}"):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "outputs"),
        workspace_root=str(tmp_path / "ws"),
        raise_on_error=True,
    )
    result: dict[str, Any] = {}

    def run_pipeline() -> None:
        try:
            result["output"] = eks_train_batch_transform(
                role_arn=ROLE,
                training_image=f"{ECR}/train:1",
                training_command=["python", "train.py"],
                serving_image=f"{ECR}/serve:1",
                checkpoint_s3_uri=f"s3://ckpt-{tag}/run",
                checkpoint_dir="/fsx/checkpoints/run",
                batch_input_uri=f"s3://data-{tag}/score",
                batch_output_uri=f"s3://data-{tag}/predictions",
                training_spec={
                    "launcher": "none",
                    "failurePolicy": {"maxRestarts": 0, "backoffSeconds": 0},
                    "podTemplate": SIM_FSX_POD_TEMPLATE,
                },
                namespace=namespace,
                kubeconfig=cluster.kubeconfig,
                poll_interval_seconds=0.5,
            ).output
        except BaseException as exc:
            result["error"] = exc

    pipeline = threading.Thread(target=run_pipeline, daemon=True)
    pipeline.start()
    tj = TrainingJobClient(namespace, kubeconfig=cluster.kubeconfig)
    job = wait_for(lambda: tj.list_jobs(), timeout=120, what="the pipeline's TrainingJob")[0]
    env = {"TOY_STEPS": "40", "TOY_STEP_SECONDS": "0.02", "TOY_EVERY": "20"}
    with LocalKubelet(cluster, namespace, job.name, TOY, tmp_path, extra_env=env) as kubelet:
        pipeline.join(timeout=300)
        assert not kubelet.errors, kubelet.errors
    assert not pipeline.is_alive(), "pipeline did not finish"
    assert "error" not in result, result.get("error")
    assert result["output"].uri == f"s3://data-{tag}/predictions"

    # The Model output was the committed checkpoint's copy in S3, and it is really there.
    done = tj.get(job.name)
    assert done.phase == "Succeeded" and done.checkpoint is not None
    assert done.checkpoint.step == 40 and done.checkpoint.uri.startswith(str(tmp_path))
    name = done.checkpoint.uri.rsplit("/", 1)[-1].removesuffix(".json")
    model_uri = f"s3://ckpt-{tag}/run/data/{name}/"
    listed = s3.list_objects_v2(Bucket=f"ckpt-{tag}", Prefix=f"run/data/{name}/")
    assert listed.get("KeyCount", 0) >= 2  # one file per rank
    sm: Any = sagemaker_backends[DEFAULT_ACCOUNT_ID]["us-west-2"]
    (transform,) = [
        j
        for j in sm.transform_jobs.values()
        if j.transform_output["S3OutputPath"] == f"s3://data-{tag}/predictions"
    ]
    container = sm._models[transform.model_name].primary_container
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == model_uri
    assert "ModelDataUrl" not in container or not container["ModelDataUrl"]
