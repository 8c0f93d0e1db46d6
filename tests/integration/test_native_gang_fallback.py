"""Where the API server does not serve PodGroups (the shared local cluster, like EKS today), the
operator stays in its own gang scheduling mode: jobs run, and their pods name no PodGroup (one
that the API server would refuse)."""

from __future__ import annotations

import asyncio

import pytest
from kopf.testing import KopfRunner
from operator_harness import apply, job_manifest, running_pods, wait_phase

from cluster import Cluster, cluster_sh
from kubetrain.api.constants import PODGROUP_API_VERSION, PODGROUP_PLURAL, GangScheduling
from kubetrain.k8s import Kube
from kubetrain.reconcile.gang import detect_gang_scheduling

pytestmark = pytest.mark.cluster


def test_without_the_podgroup_api_the_operator_falls_back_and_links_no_group(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    served = cluster.kubectl("get", "--raw", f"/apis/{PODGROUP_API_VERSION}", check=False)
    assert served.returncode != 0 or f'"name":"{PODGROUP_PLURAL}"' not in served.stdout
    mode, why = asyncio.run(detect_gang_scheduling(Kube(cluster.credentials())))
    assert mode is GangScheduling.KUBETRAIN and "does not serve" in why
    apply(cluster, namespace, job_manifest("plain", nodes=2))
    items = running_pods(cluster, namespace, "plain", attempt=1, n=2)
    assert all("schedulingGroup" not in p["spec"] for p in items)
    wait_phase(cluster, namespace, "plain", "Running")


def test_asking_a_running_cluster_for_native_gang_scheduling_says_how_to_get_it(
    cluster: Cluster,
) -> None:
    with pytest.raises(RuntimeError) as info:
        cluster_sh("up", cluster.run_dir, gang="native")
    assert "KUBETRAIN_CLUSTER_GANG=native" in str(info.value)
    assert "'hack/cluster.sh down' then 'up'" in str(info.value)
    assert cluster.kubectl("get", "--raw", "/readyz").returncode == 0  # left as it was
