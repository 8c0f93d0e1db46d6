"""The few kubetrain API strings the KFP components need, duplicated on purpose.

`kubetrain_kfp` runs inside pipeline pods that do not have the operator installed, so it speaks to
the TrainingJob CRD by group/version/plural instead of importing `kubetrain`. Keep these equal to
`operator/kubetrain/api/constants.py`; `tests/unit/test_kfp_naming.py` checks that they are.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "kubetrain.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainingJob"
PLURAL: Final = "trainingjobs"
PREFIX: Final = "kubetrain.dev/"

# Condition types on TrainingJob.status.conditions (same values as the operator's COND_*).
COND_SUCCEEDED: Final = "Succeeded"
COND_FAILED: Final = "Failed"

# Terminal phases of TrainingJob.status.phase.
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"

# Labels/annotations the launcher puts on the TrainingJobs it creates, so a retried task (or a
# reaper) can find them by pipeline run and task.
LABEL_KFP_RUN: Final = PREFIX + "kfp-run-id"
LABEL_KFP_TASK: Final = PREFIX + "kfp-task"
ANNOTATION_KFP_SPEC_HASH: Final = PREFIX + "kfp-spec-hash"

# SageMaker tag keys with the same meaning as the labels above.
TAG_KFP_RUN: Final = "kubetrain:kfp-run-id"
TAG_KFP_TASK: Final = "kubetrain:kfp-task"

# Exit status of a component that was terminated (SIGTERM) after it stopped its remote job:
# 128 + SIGTERM, what a shell reports for a process killed by SIGTERM.
EXIT_TERMINATED: Final = 143

# Env var on the training pods naming where the script should write its exported model (the
# eks_training_job component's `export_uri`), equal to the operator's ENV_EXPORT_URI.
ENV_EXPORT_URI: Final = "MODEL_EXPORT_URI"
