"""Spot drill driven by the real Karpenter (v1.6, kwok provider; issue 8).

Karpenter, built from its Go module (hack/tools/pins.tsv), provisions the gang's p5 spot nodes
from a NodePool only this drill's pods select. Deleting the NodeClaim under rank 1 (what
Karpenter's interruption controller does on a spot notice) makes Karpenter taint the node
`karpenter.sh/disrupted`, drain it through the eviction API and delete it. The operator must
checkpoint the gang, and the resumed gang must be provisionable by Karpenter: it gets a new node
and runs again from exactly the committed step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from drills import TOY, drill_job, finish, progress, reference, running_attempt
from local_kubelet import LocalKubelet
from operator_harness import apply, dump
from pod_recorder import PodRecorder

from cluster import Cluster
from kubetrain.api.constants import TAINT_KARPENTER_DISRUPTED
from support import wait_for
from tools import KARPENTER_LABEL, Proc, start_karpenter, stop_karpenter

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
STEPS = 160
TOY_ENV = {"TOY_STEPS": str(STEPS), "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "20"}
ZONES = ("us-west-2a", "us-west-2b")


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reference(tmp_path_factory.mktemp("reference"), TOY_ENV)


@pytest.fixture
def karpenter(cluster: Cluster, namespace: str, operator: object, tmp_path: Path) -> Iterator[Proc]:
    proc = start_karpenter(cluster, tmp_path, ZONES)
    try:
        yield proc
    finally:
        # The job's pods first (the operator still runs), then Karpenter's nodes.
        cluster.kubectl(
            "delete", "trainingjobs", "--all", "-n", namespace, "--timeout=60s", check=False
        )
        stop_karpenter(cluster, proc)


def nodeclaim_of(cluster: Cluster, node: str) -> str:
    claims = cluster.get("nodeclaims")["items"]
    return next(c["metadata"]["name"] for c in claims if c["status"].get("nodeName") == node)


def taints(cluster: Cluster, node: str) -> set[str]:
    proc = cluster.kubectl("get", "node", node, "-o", "json", check=False)
    if proc.returncode != 0:
        return set()
    return {t["key"] for t in json.loads(proc.stdout)["spec"].get("taints", [])}


def test_karpenter_nodeclaim_deletion_drains_and_the_gang_resumes_on_a_new_node(
    cluster: Cluster,
    namespace: str,
    operator: object,
    karpenter: Proc,
    tmp_path: Path,
    reference_digest: str,
) -> None:
    job = "karp"
    manifest = drill_job(job)
    manifest["spec"]["podTemplate"]["spec"]["nodeSelector"] = {KARPENTER_LABEL: "karpenter-kwok"}
    apply(cluster, namespace, manifest)
    with (
        LocalKubelet(cluster, namespace, job, TOY, tmp_path, extra_env=TOY_ENV) as kubelet,
        PodRecorder(cluster, namespace, job) as recorder,
    ):
        try:
            first = running_attempt(cluster, namespace, job, 1, timeout=180)
        except AssertionError:
            raise AssertionError(karpenter.output()[-6000:] + dump(cluster, namespace)) from None
        first_nodes = {p["spec"]["nodeName"] for p in first}
        for node in first_nodes:  # Karpenter made them for this gang
            assert cluster.get("node", node)["metadata"]["labels"][KARPENTER_LABEL]
        wait_for(lambda: progress(tmp_path, f"{job}-1-0") >= 30, timeout=60, what="step 30")

        victim = first[1]["spec"]["nodeName"]
        claim = nodeclaim_of(cluster, victim)
        cluster.kubectl("delete", "nodeclaim", claim, "--wait=false")
        wait_for(
            lambda: TAINT_KARPENTER_DISRUPTED in taints(cluster, victim),
            timeout=60,
            what=f"Karpenter's disrupted taint on {victim}",
        )
        wait_for(
            lambda: recorder.requests(1, 2), timeout=30, what="checkpoint request on every pod"
        )

        try:
            second = running_attempt(cluster, namespace, job, 2, timeout=180)
        except AssertionError:
            raise AssertionError(karpenter.output()[-6000:] + dump(cluster, namespace)) from None
        second_nodes = {p["spec"]["nodeName"] for p in second}
        assert victim not in second_nodes
        new = second_nodes - first_nodes
        assert new, f"the resumed gang runs on {second_nodes}: no node was provisioned for it"
        for node in new:
            assert cluster.get("node", node)["metadata"]["labels"][KARPENTER_LABEL]
        # Karpenter finished with the old node: drained and gone.
        wait_for(
            lambda: cluster.kubectl("get", "node", victim, check=False).returncode != 0,
            timeout=120,
            what=f"{victim} deleted by Karpenter",
        )
        st = finish(cluster, namespace, job, kubelet, f"{job}-2-0")

    commit = recorder.last_commit(f"{job}-1-0")
    assert commit is not None
    assert set(recorder.resume_manifests(2).values()) == {commit["manifest"]}
    result = json.loads((tmp_path / "results" / f"{job}-2-0.json").read_text())
    assert result["started_at_step"] == commit["step"]
    assert result["params"] == reference_digest
    (event,) = st["interruptions"]
    assert event["node"] == victim and event["source"] == TAINT_KARPENTER_DISRUPTED
    assert event["checkpointStep"] == commit["step"]
    assert "ignoring pod" not in karpenter.output()
