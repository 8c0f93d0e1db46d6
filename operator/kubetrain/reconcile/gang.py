"""Which gang scheduling mode the operator runs in, decided once at startup.

NATIVE where the API server serves the scheduling API's PodGroups (Kubernetes >= 1.35 with the
GenericWorkload feature gate and scheduling.k8s.io/v1alpha2 enabled): the scheduler binds an
attempt's pods all or none. KUBETRAIN everywhere else. Discovery cannot see whether the scheduler
runs its GangScheduling plugin (a separate feature gate); where the API is served without it,
the admin sets KUBETRAIN_GANG_SCHEDULING=kubetrain (kubetrain.config).
"""

from __future__ import annotations

from kubetrain.api.constants import PODGROUP_API_VERSION, PODGROUP_PLURAL, GangScheduling
from kubetrain.config import ENV_GANG_SCHEDULING, gang_scheduling_override
from kubetrain.k8s import Kube


async def detect_gang_scheduling(kube: Kube) -> tuple[GangScheduling, str]:
    """(mode, why) for the startup log line."""
    override = gang_scheduling_override()
    if override is not None:
        return override, f"set by {ENV_GANG_SCHEDULING}"
    if await kube.serves(PODGROUP_API_VERSION, PODGROUP_PLURAL):
        return GangScheduling.NATIVE, (
            f"the API server serves {PODGROUP_PLURAL} in {PODGROUP_API_VERSION}: "
            "one PodGroup per attempt, the scheduler binds its pods all or none"
        )
    return GangScheduling.KUBETRAIN, (
        f"the API server does not serve {PODGROUP_PLURAL} in {PODGROUP_API_VERSION} "
        "(Kubernetes >= 1.35 with the GenericWorkload feature gate): the operator keeps "
        "the gang together"
    )
