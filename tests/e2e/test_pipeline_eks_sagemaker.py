"""Pipeline (a) end to end under kfp.local: SageMaker processing (moto) -> EKS training (the local
control plane with the kubetrain operator running; kwok pods succeed) -> SageMaker model and
endpoint (moto). Artifacts and parameters must flow from step to step."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster

pytestmark = pytest.mark.cluster

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
# The simulated kubelet (hack/cluster/stages.yaml) ends a running pod the way this annotation says.
SIMULATED_SUCCESS = {
    "podTemplate": {
        "metadata": {"annotations": {"sim.test/outcome": "Succeeded", "sim.test/after": "1s"}}
    }
}


def test_processing_eks_training_endpoint(
    cluster: Cluster, namespace: str, operator: None, aws_env: str, tmp_path: Path
) -> None:
    from kfp import local
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sagemaker.models import sagemaker_backends

    from kubetrain_kfp.constants import GROUP, LABEL_KFP_RUN, PLURAL, VERSION
    from kubetrain_kfp.launcher import custom_objects_api
    from kubetrain_kfp.pipelines.eks_sagemaker import eks_train_sagemaker_deploy

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "outputs"),
        workspace_root=str(tmp_path / "ws"),
        raise_on_error=True,
    )
    tag = uuid.uuid4().hex[:8]
    export = f"s3://models-{tag}/llama/model.tar.gz"
    eks_train_sagemaker_deploy(
        role_arn=ROLE,
        raw_data_uri=f"s3://data-{tag}/raw",
        prepared_data_uri=f"s3://data-{tag}/prepared",
        processing_image=f"{ECR}/prep:1",
        training_image=f"{ECR}/train-neuron:1",
        training_command=["torchrun", "train.py"],
        serving_image=f"{ECR}/serve-neuron:1",
        checkpoint_s3_uri=f"s3://ckpt-{tag}/llama",
        model_export_uri=export,
        endpoint_name=f"llama-{tag}",
        endpoint_instance_type="ml.m5.xlarge",  # moto's hosting enum predates inf2
        training_spec=SIMULATED_SUCCESS,
        namespace=namespace,
        kubeconfig=cluster.kubeconfig,
        poll_interval_seconds=0.5,
    )
    # The endpoint exists in moto and serves the model trained on EKS.
    sm: Any = sagemaker_backends[DEFAULT_ACCOUNT_ID]["us-west-2"]
    endpoint = sm.endpoints[f"llama-{tag}"]
    assert endpoint.endpoint_status == "InService"
    variant = sm.endpoint_configs[endpoint.endpoint_config_name].production_variants[0]
    assert sm._models[variant["ModelName"]].primary_container["ModelDataUrl"] == export

    # The TrainingJob ran to success on the cluster, fed by the processing step's Dataset.
    api = custom_objects_api(cluster.kubeconfig)
    jobs = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["status"]["phase"] == "Succeeded"
    assert job["metadata"]["labels"][LABEL_KFP_RUN]
    assert {"name": "TRAIN_DATA_URI", "value": f"s3://data-{tag}/prepared"} in job["spec"]["env"]
    # The export location reaches the training script, and is what the Model output points at.
    assert {"name": "MODEL_EXPORT_URI", "value": export} in job["spec"]["env"]
    assert job["spec"]["accelerator"] == {"kind": "neuron", "instanceType": "trn1.32xlarge"}
    prepared = f"s3://data-{tag}/prepared"
    outputs = [
        (j.processing_output_config or {}).get("Outputs") or [] for j in sm.processing_jobs.values()
    ]
    assert sum(any(o["S3Output"]["S3Uri"] == prepared for o in out) for out in outputs) == 1
