# mypy: disable-error-code="valid-type,type-arg,untyped-decorator,operator,name-match,no-any-return"
"""Pipeline (a): SageMaker processing -> EKS training (Trainium or spot GPUs) -> SageMaker model
and endpoint. The Model artifact from EKS training feeds SageMaker hosting unchanged.

The steps run inside `dsl.ExitHandler(cleanup_run(...))`: a TrainingJob has no runtime limit of
its own, so if the run is terminated on a backend that does not deliver SIGTERM to the launcher,
the exit handler still deletes it. (KFP allows no pipeline outputs from inside an exit handler, so
this pipeline returns none; the endpoint name is `endpoint_name` or the deploy task's output.)
Pipeline (b) has no exit handler: its SageMaker jobs end at MaxRuntimeInSeconds regardless."""

from kfp import dsl
from kfp.dsl import PIPELINE_JOB_ID_PLACEHOLDER as RUN_ID
from kfp.dsl import PIPELINE_TASK_NAME_PLACEHOLDER as TASK

from kubetrain_kfp.components import (
    cleanup_run,
    eks_training_job,
    sagemaker_create_model,
    sagemaker_deploy,
    sagemaker_processing,
)


@dsl.pipeline(
    name="kubetrain-eks-train-sagemaker-deploy",
    description="Prepare data on SageMaker, train on EKS with kubetrain, serve on SageMaker.",
)
def eks_train_sagemaker_deploy(
    role_arn: str,
    raw_data_uri: str,
    prepared_data_uri: str,
    processing_image: str,
    training_image: str,
    training_command: list,
    serving_image: str,
    checkpoint_s3_uri: str,
    model_export_uri: str,
    accelerator: str = "neuron",
    instance_type: str = "trn1.32xlarge",
    nodes: int = 2,
    capacity_type: str = "spot-then-on-demand",
    processing_instance_type: str = "ml.m5.xlarge",
    endpoint_instance_type: str = "ml.inf2.xlarge",
    endpoint_name: str = "",
    training_spec: dict = {},  # noqa: B006 - full TrainingJob spec under the inputs (podTemplate, ...)
    namespace: str = "",
    kubeconfig: str = "",
    poll_interval_seconds: float = 30.0,
) -> None:
    # Backstop for termination on backends that do not forward SIGTERM to the task's Python.
    reaper = cleanup_run(
        run_id=RUN_ID, namespace=namespace, kubeconfig=kubeconfig
    ).set_caching_options(enable_caching=False)
    with dsl.ExitHandler(reaper):
        prep = sagemaker_processing(
            image=processing_image,
            role_arn=role_arn,
            instance_type=processing_instance_type,
            input_s3_uri=raw_data_uri,
            output_s3_uri=prepared_data_uri,
            run_id=RUN_ID,
            task_name=TASK,
            poll_interval_seconds=poll_interval_seconds,
        ).set_display_name("prepare data (SageMaker processing)")
        train = (
            eks_training_job(
                image=training_image,
                command=training_command,
                nodes=nodes,
                accelerator=accelerator,
                instance_type=instance_type,
                efa_interfaces="auto",
                capacity_type=capacity_type,
                checkpoint_s3_uri=checkpoint_s3_uri,
                export_uri=model_export_uri,
                train_data=prep.outputs["output"],
                spec=training_spec,
                namespace=namespace,
                kubeconfig=kubeconfig,
                run_id=RUN_ID,
                task_name=TASK,
                poll_interval_seconds=poll_interval_seconds,
            )
            .set_display_name("train on EKS (kubetrain TrainingJob)")
            .set_retry(num_retries=2)  # a retry reattaches to the same TrainingJob
        )
        model = sagemaker_create_model(
            model=train.outputs["model"],
            image=serving_image,
            role_arn=role_arn,
            run_id=RUN_ID,
            task_name=TASK,
        ).set_caching_options(enable_caching=False)
        sagemaker_deploy(
            model_name=model.outputs["model_name"],
            instance_type=endpoint_instance_type,
            endpoint_name=endpoint_name,
            run_id=RUN_ID,
            task_name=TASK,
            poll_interval_seconds=poll_interval_seconds,
        ).set_caching_options(enable_caching=False)
