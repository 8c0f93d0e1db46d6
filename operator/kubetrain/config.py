"""The operator's own configuration, set by the cluster admin on its Deployment (env).

Only settings that change what the operator will do on a job author's behalf live here:
`KUBETRAIN_ALLOW_PRIVILEGED_PODS=true` lets spec.podTemplate set privileged and host-level fields
(api/podtemplate.py); by default the operator refuses them, because it creates pods with its own
ServiceAccount and must not grant a job author what the author could not do directly.
`KUBETRAIN_GANG_SCHEDULING=kubetrain|native` overrides the gang scheduling mode that the operator
otherwise chooses at startup from what the API server serves (kubetrain.reconcile.gang).
`KUBETRAIN_PROVISIONER_NODE_LABELS` (comma-separated label keys, default `karpenter.sh/nodepool`)
marks nodes a provisioner adds on demand: a gang short of room on such nodes is released at once
for the provisioner to scale (it ignores gated pods) instead of waiting gated for room to appear.
Empty: every node is a fixed pool. Only the operator's own gang mode (kubetrain) gates pods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kubetrain.api.constants import LABEL_KARPENTER_NODEPOOL, GangScheduling

ENV_ALLOW_PRIVILEGED_PODS = "KUBETRAIN_ALLOW_PRIVILEGED_PODS"
ENV_GANG_SCHEDULING = "KUBETRAIN_GANG_SCHEDULING"
ENV_PROVISIONER_NODE_LABELS = "KUBETRAIN_PROVISIONER_NODE_LABELS"
# Set by `kubetrain-operator` (kubetrain.__main__) for kubetrain.handlers in the same process:
# HOST:PORT for /metrics and /readyz (unset: off), and the namespaces it serves (comma-separated;
# unset: all), which the operator's own pod watch follows as kopf does.
ENV_METRICS_ADDRESS = "KUBETRAIN_METRICS_ADDRESS"
ENV_NAMESPACES = "KUBETRAIN_NAMESPACES"


@dataclass(frozen=True)
class OperatorConfig:
    allow_privileged_pods: bool = False
    provisioner_node_labels: tuple[str, ...] = (LABEL_KARPENTER_NODEPOOL,)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def operator_config() -> OperatorConfig:
    """Read on every call (cheap), so a test or an admin's restart sees the current value."""
    labels = os.environ.get(ENV_PROVISIONER_NODE_LABELS)
    return OperatorConfig(
        allow_privileged_pods=_truthy(os.environ.get(ENV_ALLOW_PRIVILEGED_PODS)),
        provisioner_node_labels=(
            (LABEL_KARPENTER_NODEPOOL,)
            if labels is None
            else tuple(k.strip() for k in labels.split(",") if k.strip())
        ),
    )


def gang_scheduling_override() -> GangScheduling | None:
    """The admin's choice of gang scheduling mode, or None to detect it ("" or "auto")."""
    value = (os.environ.get(ENV_GANG_SCHEDULING) or "").strip().lower()
    if value in ("", "auto"):
        return None
    try:
        return GangScheduling(value)
    except ValueError:
        choices = ", ".join(["auto", *(m.value for m in GangScheduling)])
        raise ValueError(
            f"{ENV_GANG_SCHEDULING}={value!r} is not a gang scheduling mode: set one of {choices}"
        ) from None
