"""Node agent against amazon-ec2-metadata-mock (AEMM, IMDSv2-only) and the real API server.

AEMM runs as a subprocess on 127.0.0.1 with `--imdsv2`, so an IMDSv1 request (no token) gets 401
and the agent could never see a notice without the token dance. The agent runs as
`python -m kubetrain.nodeagent` (the DaemonSet's command) with KUBECONFIG pointing at the local
cluster and marks a simulated spot Node; the assertions read that Node back through the API.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import ROOT, Cluster
from kubetrain.api import constants as c
from kubetrain.nodeagent import notices
from support import free_port, wait_for
from tools import Proc, http_status, tool

pytestmark = pytest.mark.cluster

NODE = "p5-spot-b1"  # used by no other test; restored by the cluster fixture afterwards
SPOT_PATH = notices.SPOT_INSTANCE_ACTION_PATH
OURS = (c.TAINT_KUBETRAIN_SPOT_ITN, c.TAINT_KUBETRAIN_REBALANCE)


@pytest.fixture(scope="module")
def aemm_bin() -> Path:
    """The pinned AEMM binary, built by hack/tools.sh when missing (idempotent, ~20 s once)."""
    return tool("ec2-metadata-mock")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def _start(name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, tmp_path / f"{name}.log", env)
        procs.append(proc)
        return proc

    yield _start
    for proc in reversed(procs):
        proc.stop()


def start_aemm(start: Callable[..., Proc], binary: Path, *args: str) -> tuple[str, Proc]:
    """AEMM on 127.0.0.1:<free port>, IMDSv2 only; returns once it issues tokens."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start("aemm", [str(binary), *args, "--imdsv2", "-n", "127.0.0.1", "-p", str(port)])
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    wait_for(lambda: http_status(url + "/latest/api/token", ttl, "PUT") == 200, 30, what="AEMM up")
    # The mock really enforces IMDSv2: a tokenless (v1) request is refused.
    assert http_status(url + SPOT_PATH) == 401
    return url, proc


def start_agent(start: Callable[..., Proc], cluster: Cluster, imds_url: str) -> Proc:
    cluster._mutated_nodes.add(NODE)  # the fixture puts the node back after the test
    env = cluster.env()
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "operator"), env.get("PYTHONPATH")])
    )
    env["NODE_NAME"] = NODE
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds_url  # the env path; the flag is unit-tested
    return start("agent", [sys.executable, "-m", "kubetrain.nodeagent", "--interval", "0.2"], env)


def node_marks(cluster: Cluster) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    node = cluster.get("node", NODE)
    taints = {t["key"]: t for t in node["spec"].get("taints", [])}
    annotations = node["metadata"].get("annotations", {})
    return taints, annotations


def polls_served(aemm: Proc, path: str) -> int:
    """Requests AEMM answered for `path` with a valid token (its log has one line per request)."""
    lines = aemm.output().splitlines()
    return sum(
        1
        for i, line in enumerate(lines)
        if f" {path} " in line and i + 1 < len(lines) and "Token validated" in lines[i + 1]
    )


def test_spot_notice_taints_and_annotates_the_node(
    cluster: Cluster, aemm_bin: Path, start: Callable[..., Proc]
) -> None:
    when = (datetime.now(UTC) + timedelta(minutes=2)).replace(microsecond=0)
    time = when.strftime("%Y-%m-%dT%H:%M:%SZ")  # pinned: AEMM's default changes every request
    url, aemm = start_aemm(start, aemm_bin, "spot", "--action", "terminate", "--time", time)
    refused = aemm.output().count("Token required")  # start_aemm's own tokenless probe
    agent = start_agent(start, cluster, url)

    def marked() -> tuple[dict[str, dict[str, Any]], dict[str, str]] | None:
        taints, annotations = node_marks(cluster)
        return (taints, annotations) if c.TAINT_KUBETRAIN_SPOT_ITN in taints else None

    taints, annotations = wait_for(marked, timeout=30, what=f"spot taint on {NODE}")
    assert taints[c.TAINT_KUBETRAIN_SPOT_ITN] == {
        "key": c.TAINT_KUBETRAIN_SPOT_ITN,
        "value": time.replace(":", "-"),
        "effect": "NoSchedule",
    }
    assert json.loads(annotations[c.ANNOTATION_NODE_SPOT_NOTICE]) == {
        "action": "terminate",
        "time": time,
    }
    assert taints["nvidia.com/gpu"]["effect"] == "NoSchedule"  # the pool's taint is kept
    assert aemm.output().count("Token required") == refused  # the agent always sent a token

    # Idempotent: many more polls of the same notice, still exactly one patch. AEMM's spot mode
    # also serves a rebalance recommendation whose noticeTime is restamped on every request:
    # recorded once too, not once per poll.
    served = polls_served(aemm, SPOT_PATH)
    wait_for(lambda: polls_served(aemm, SPOT_PATH) >= served + 10, 30, what="10 more polls")
    assert agent.output().count("spot notice") == 1, agent.output()
    assert agent.output().count("rebalance notice") == 1, agent.output()

    # Graceful SIGTERM: exits 0 and says so.
    assert agent.stop() == 0, agent.output()
    assert "stopped after 2 node patches" in agent.output()


def test_rebalance_recommendation_without_spot_notice(
    cluster: Cluster, aemm_bin: Path, start: Callable[..., Proc]
) -> None:
    # All mocks; the spot notice is an hour away (404 until then), the rebalance one is out now.
    url, aemm = start_aemm(
        start, aemm_bin, "--mock-delay-sec", "3600", "--rebalance-delay-sec", "0"
    )
    start_agent(start, cluster, url)

    taints = wait_for(
        lambda: (t := node_marks(cluster)[0]).get(c.TAINT_KUBETRAIN_REBALANCE) and t,
        timeout=30,
        what=f"rebalance taint on {NODE}",
    )
    assert taints[c.TAINT_KUBETRAIN_REBALANCE]["effect"] == "NoSchedule"
    notice = json.loads(node_marks(cluster)[1][c.ANNOTATION_NODE_REBALANCE_NOTICE])
    assert set(notice) == {"noticeTime"}
    assert taints[c.TAINT_KUBETRAIN_REBALANCE]["value"] == notices.label_value(notice["noticeTime"])
    served = polls_served(aemm, SPOT_PATH)
    wait_for(lambda: polls_served(aemm, SPOT_PATH) >= served + 5, 30, what="5 more spot polls")
    taints, annotations = node_marks(cluster)
    assert c.TAINT_KUBETRAIN_SPOT_ITN not in taints
    assert c.ANNOTATION_NODE_SPOT_NOTICE not in annotations


def test_no_notice_leaves_the_node_alone(
    cluster: Cluster, aemm_bin: Path, start: Callable[..., Proc]
) -> None:
    # Both notices an hour away: IMDS answers 404 on both paths for the whole test.
    url, aemm = start_aemm(
        start, aemm_bin, "spot", "--mock-delay-sec", "3600", "--rebalance-delay-sec", "3600"
    )
    assert not set(OURS) & set(node_marks(cluster)[0])  # clean to begin with
    agent = start_agent(start, cluster, url)
    wait_for(lambda: polls_served(aemm, SPOT_PATH) >= 10, 30, what="10 spot polls answered 404")
    assert polls_served(aemm, notices.REBALANCE_PATH) >= 9
    taints, annotations = node_marks(cluster)
    assert not set(OURS) & set(taints)
    assert not {c.ANNOTATION_NODE_SPOT_NOTICE, c.ANNOTATION_NODE_REBALANCE_NOTICE} & set(
        annotations
    )
    assert agent.popen.poll() is None, agent.output()  # still polling, not crashed
    assert "poll failed" not in agent.output()  # 404 is "no notice", not an error


def test_daemonset_lands_on_spot_nodes_only(cluster: Cluster, namespace: str) -> None:
    """The shipped DaemonSet, applied to the cluster, schedules one agent per spot node in both
    label dialects (Karpenter and EKS managed node groups), past the GPU taints, and nowhere else."""
    docs = list(
        yaml.safe_load_all(
            cluster.kubectl("kustomize", str(ROOT / "manifests" / "node-agent")).stdout
        )
    )
    ds = copy.deepcopy(next(d for d in docs if d["kind"] == "DaemonSet"))
    ds["metadata"]["namespace"] = namespace
    ds["spec"]["template"]["spec"]["serviceAccountName"] = "default"

    mng_spot = copy.deepcopy(cluster.node_spec("p4d-od-a0"))
    mng_spot["metadata"]["name"] = "mng-spot-nodeagent"
    mng_spot["metadata"]["labels"]["eks.amazonaws.com/capacityType"] = "SPOT"
    mng_spot["metadata"]["labels"]["kubernetes.io/hostname"] = "mng-spot-nodeagent"
    cluster.add_node(mng_spot)

    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(ds))
    spot_nodes = {
        n["metadata"]["name"]
        for n in cluster.get("nodes")["items"]
        if n["metadata"]["labels"].get("karpenter.sh/capacity-type") == "spot"
        or n["metadata"]["labels"].get("eks.amazonaws.com/capacityType") == "SPOT"
    }
    assert "mng-spot-nodeagent" in spot_nodes and len(spot_nodes) >= 2

    def scheduled() -> set[str] | None:
        pods = cluster.get("pods", "-n", namespace)["items"]
        names = {p["spec"].get("nodeName") for p in pods}
        return names if names == spot_nodes else None

    wait_for(scheduled, timeout=60, what=f"agent pods on exactly {sorted(spot_nodes)}")
    status = cluster.get("daemonset", ds["metadata"]["name"], "-n", namespace)["status"]
    assert status["desiredNumberScheduled"] == len(spot_nodes)
