"""Kubeflow Pipelines v2 components that launch TrainingJobs and Amazon SageMaker steps."""
