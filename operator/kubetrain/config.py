"""The operator's own configuration, set by the cluster admin on its Deployment (env).

Only settings that change what the operator will do on a job author's behalf live here:
`KUBETRAIN_ALLOW_PRIVILEGED_PODS=true` lets spec.podTemplate set privileged and host-level fields
(api/podtemplate.py); by default the operator refuses them, because it creates pods with its own
ServiceAccount and must not grant a job author what the author could not do directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_ALLOW_PRIVILEGED_PODS = "KUBETRAIN_ALLOW_PRIVILEGED_PODS"


@dataclass(frozen=True)
class OperatorConfig:
    allow_privileged_pods: bool = False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def operator_config() -> OperatorConfig:
    """Read on every call (cheap), so a test or an admin's restart sees the current value."""
    return OperatorConfig(allow_privileged_pods=_truthy(os.environ.get(ENV_ALLOW_PRIVILEGED_PODS)))
