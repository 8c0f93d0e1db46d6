"""A typed Python client for TrainingJobs (what the `kubetrain` CLI and the KFP launcher use).

    from kubetrain.client import TrainingJobClient
    tj = TrainingJobClient(namespace="ml")
    tj.create(manifest)
    job = tj.wait("llama-fsdp", timeout=3600, on_change=print)   # the interruption timeline
    ident, ckpt = tj.request_checkpoint("llama-fsdp")              # checkpoint now, wait for it
    for line in tj.logs("llama-fsdp", rank=1, attempt=1): ...

Needs the `kubernetes` package (`pip install 'kubetrain[client]'`), imported when a client is
made; the views are plain dataclasses.
"""

from kubetrain.client.jobs import (
    AlreadyExists,
    ClientError,
    JobFailed,
    NotFound,
    Rejected,
    TrainingJobClient,
    WaitTimeout,
    default_namespace,
    load_api_client,
)
from kubetrain.client.views import (
    CheckpointRef,
    Condition,
    Interruption,
    JobView,
    PodView,
    Timeline,
)

__all__ = [
    "AlreadyExists",
    "CheckpointRef",
    "ClientError",
    "Condition",
    "Interruption",
    "JobFailed",
    "JobView",
    "NotFound",
    "PodView",
    "Rejected",
    "Timeline",
    "TrainingJobClient",
    "WaitTimeout",
    "default_namespace",
    "load_api_client",
]
