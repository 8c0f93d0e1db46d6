# mypy: disable-error-code="valid-type,type-arg,untyped-decorator,operator,name-match,no-any-return"
"""Pipeline (b): SageMaker managed spot training -> model -> batch transform."""

from kfp import dsl
from kfp.dsl import PIPELINE_JOB_ID_PLACEHOLDER as RUN_ID
from kfp.dsl import PIPELINE_TASK_NAME_PLACEHOLDER as TASK
from kfp.dsl import Dataset

from kubetrain_kfp.components import (
    sagemaker_batch_transform,
    sagemaker_create_model,
    sagemaker_training,
)


@dsl.pipeline(
    name="kubetrain-sagemaker-spot-training-batch-transform",
    description="Train with managed spot (checkpointed, resumable), then score a dataset in batch.",
)
def spot_training_batch_transform(
    role_arn: str,
    training_image: str,
    train_data_uri: str,
    output_s3_uri: str,
    batch_input_uri: str,
    batch_output_uri: str,
    hyperparameters: dict = {},  # noqa: B006 - KFP compiles the default into the pipeline spec
    training_instance_type: str = "ml.g5.2xlarge",
    transform_instance_type: str = "ml.m5.xlarge",
    max_runtime_seconds: int = 3600,
    max_wait_seconds: int = 7200,
    poll_interval_seconds: float = 30.0,
) -> Dataset:
    train = sagemaker_training(
        image=training_image,
        role_arn=role_arn,
        instance_type=training_instance_type,
        output_s3_uri=output_s3_uri,
        channels={"train": train_data_uri},
        hyperparameters=hyperparameters,
        spot=True,
        max_runtime_seconds=max_runtime_seconds,
        max_wait_seconds=max_wait_seconds,
        run_id=RUN_ID,
        task_name=TASK,
        poll_interval_seconds=poll_interval_seconds,
    ).set_retry(num_retries=2)  # a retry reattaches to the same training job
    model = sagemaker_create_model(
        model=train.outputs["model"],
        image=training_image,
        role_arn=role_arn,
        run_id=RUN_ID,
        task_name=TASK,
    ).set_caching_options(enable_caching=False)
    score = sagemaker_batch_transform(
        model_name=model.outputs["model_name"],
        input_s3_uri=batch_input_uri,
        output_s3_uri=batch_output_uri,
        instance_type=transform_instance_type,
        run_id=RUN_ID,
        task_name=TASK,
        poll_interval_seconds=poll_interval_seconds,
    )
    return score.outputs["output"]
