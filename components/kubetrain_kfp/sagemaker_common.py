"""What every SageMaker step shares: where to call, how to name, what to return."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubetrain_kfp import aws, naming
from kubetrain_kfp import sagemaker_requests as req
from kubetrain_kfp import validate as v
from kubetrain_kfp.sagemaker_jobs import JobKind, run_job


@dataclass(frozen=True)
class Target:
    """Where and how to talk to SageMaker, and how this task is named."""

    run_id: str
    task_name: str
    job_name: str = ""  # explicit override of the deterministic name
    region: str = ""
    endpoint_url: str = ""
    poll_seconds: float = 30.0
    timeout_seconds: float = 0.0

    def name(self, prefix: str, max_len: int = naming.SAGEMAKER_MAX) -> str:
        if self.job_name:
            if len(self.job_name) > max_len or not _name_ok(self.job_name):
                raise v.InputError(
                    f"input 'job_name' = {self.job_name!r} is not a valid SageMaker name: up to "
                    f"{max_len} letters, digits and '-', starting with a letter or digit"
                )
            return self.job_name
        return naming.sagemaker_name(prefix, self.run_id, self.task_name, max_len)

    def check(self) -> None:
        v.positive(self.poll_seconds, "poll_interval_seconds")
        v.positive(self.timeout_seconds, "timeout_seconds", allow_zero=True)

    def sagemaker(self) -> Any:
        return aws.client("sagemaker", self.region, self.endpoint_url)

    def logs(self) -> Any:
        return aws.client("logs", self.region, self.endpoint_url)

    def tags(self) -> list[dict[str, str]]:
        return req.tags(self.run_id, self.task_name)

    def run(self, kind: JobKind, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """Create (or reattach to) the job tagged with this run, follow it to the end."""
        return run_job(
            self.sagemaker(),
            kind,
            name,
            {**request, "Tags": self.tags()},
            poll_seconds=self.poll_seconds,
            timeout_seconds=self.timeout_seconds,
            logs_client=self.logs(),
        )


def _name_ok(name: str) -> bool:

    return re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name) is not None


@dataclass(frozen=True)
class JobResult:
    """What a job component returns: names, the primary output URI, metrics and metadata."""

    job_name: str
    job_arn: str
    output_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """Datetimes from boto3 become ISO strings: every output must be plain JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(x) for x in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
