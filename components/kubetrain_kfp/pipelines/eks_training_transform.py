# mypy: disable-error-code="valid-type,type-arg,untyped-decorator,operator,name-match,no-any-return"
"""Pipeline (c): EKS training with kubetrain -> SageMaker model -> batch transform.

The training job mirrors its checkpoints to `checkpoint_s3_uri`; its Model output is the committed
checkpoint's copy there (or `model_export_uri`, when the training script exports a model to the
location it finds in MODEL_EXPORT_URI), which SageMaker can read. Task names and the run id
come from KFP's own placeholders, the components' defaults: nothing is passed by hand.
"""

from kfp import dsl
from kfp.dsl import Dataset

from kubetrain_kfp.components import (
    eks_training_job,
    sagemaker_batch_transform,
    sagemaker_create_model,
)


@dsl.pipeline(
    name="kubetrain-eks-train-batch-transform",
    description="Train on EKS with kubetrain (spot, checkpointed to S3), then score in batch.",
)
def eks_train_batch_transform(
    role_arn: str,
    training_image: str,
    training_command: list,
    serving_image: str,
    checkpoint_s3_uri: str,
    batch_input_uri: str,
    batch_output_uri: str,
    model_export_uri: str = "",
    checkpoint_dir: str = "",
    accelerator: str = "nvidia",
    instance_type: str = "p5.48xlarge",
    nodes: int = 2,
    capacity_type: str = "spot",
    transform_instance_type: str = "ml.m5.xlarge",
    training_spec: dict = {},  # noqa: B006 - full TrainingJob spec under the inputs (podTemplate, ...)
    namespace: str = "",
    kubeconfig: str = "",
    poll_interval_seconds: float = 30.0,
) -> Dataset:
    train = (
        eks_training_job(
            image=training_image,
            command=training_command,
            nodes=nodes,
            accelerator=accelerator,
            instance_type=instance_type,
            capacity_type=capacity_type,
            checkpoint_dir=checkpoint_dir,
            checkpoint_s3_uri=checkpoint_s3_uri,
            export_uri=model_export_uri,
            spec=training_spec,
            namespace=namespace,
            kubeconfig=kubeconfig,
            poll_interval_seconds=poll_interval_seconds,
        )
        .set_display_name("train on EKS (kubetrain TrainingJob)")
        .set_retry(num_retries=2)  # a retry reattaches to the same TrainingJob
    )
    model = sagemaker_create_model(
        model=train.outputs["model"], image=serving_image, role_arn=role_arn
    ).set_caching_options(enable_caching=False)
    transform = sagemaker_batch_transform(
        model_name=model.outputs["model_name"],
        input_s3_uri=batch_input_uri,
        output_s3_uri=batch_output_uri,
        instance_type=transform_instance_type,
        poll_interval_seconds=poll_interval_seconds,
    )
    return transform.outputs["output"]
