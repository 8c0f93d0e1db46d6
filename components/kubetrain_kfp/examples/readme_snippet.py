# Run pipeline (b) on your machine: every task is a local subprocess, every AWS call goes to the
# endpoint in AWS_ENDPOINT_URL (your account, or a moto server for a dry run).
from kfp import local

from kubetrain_kfp.pipelines.spot_training_transform import spot_training_batch_transform

local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root="./local_outputs")
run = spot_training_batch_transform(
    role_arn="arn:aws:iam::123456789012:role/sagemaker-exec",
    training_image="123456789012.dkr.ecr.us-west-2.amazonaws.com/xgboost:1.7",
    train_data_uri="s3://my-ml-bucket/data/train",
    output_s3_uri="s3://my-ml-bucket/models",
    batch_input_uri="s3://my-ml-bucket/data/score",
    batch_output_uri="s3://my-ml-bucket/predictions",
    hyperparameters={"max_depth": 6, "eta": 0.2, "num_round": 100},
    poll_interval_seconds=5.0,
)
print("predictions:", run.output.uri)
