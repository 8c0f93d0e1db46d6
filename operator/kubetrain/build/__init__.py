"""Pure builders: (spec, attempt, profile) -> complete manifests.

No I/O, no clock, no uuid, no kopf or Kubernetes client: the same inputs always give the same
dicts, which is what makes retried reconciles safe and lets tests compare whole objects.
"""

from kubetrain.build.launcher import completion_ranks
from kubetrain.build.names import (
    JobRef,
    fsx_claim_name,
    fsx_volume_name,
    owner_reference,
    pod_name,
    podgroup_name,
    service_name,
    worker_role,
    worker_service_account,
)
from kubetrain.build.objects import (
    build_attempt,
    build_fsx_static,
    build_pod,
    build_rbac,
    build_service,
    fsx_selector,
)
from kubetrain.build.placement import Placement, gated, release_patch
from kubetrain.build.podgroup import build_podgroup, scheduling_group, superseded_podgroups
from kubetrain.build.resolve import Resolved, resolve, spec_hash

__all__ = [
    "JobRef",
    "Placement",
    "Resolved",
    "build_attempt",
    "build_fsx_static",
    "build_pod",
    "build_podgroup",
    "build_rbac",
    "build_service",
    "completion_ranks",
    "fsx_claim_name",
    "fsx_selector",
    "fsx_volume_name",
    "gated",
    "owner_reference",
    "pod_name",
    "podgroup_name",
    "release_patch",
    "resolve",
    "scheduling_group",
    "service_name",
    "spec_hash",
    "superseded_podgroups",
    "worker_role",
    "worker_service_account",
]
