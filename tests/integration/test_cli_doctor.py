"""`kubetrain doctor` against the local cluster: what is missing, with the fix; then all green
once an operator Deployment is available and a spot-notice source (the node agent) is there."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from operator_harness import install_crd

from cluster import Cluster
from kubetrain.cli.main import EXIT_DOCTOR, EXIT_OK, run
from support import wait_for

pytestmark = pytest.mark.cluster
NS = "kubetrain-system"


def doctor(cluster: Cluster, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(["doctor", "--kubeconfig", cluster.kubeconfig, *args], out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def workloads() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "doctor-test"}
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "registry.example/kubetrain-operator:0.1.0"}],
        },
    }
    agent = {
        "metadata": {"labels": labels},
        "spec": {
            "nodeSelector": {"doctor-test": "nowhere"},
            "containers": [{"name": "agent", "image": "registry.example/kubetrain:0.1.0"}],
        },
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kubetrain-operator", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kubetrain-node-agent", "namespace": NS},
            "spec": {"selector": {"matchLabels": labels}, "template": agent},
        },
    ]


@pytest.fixture
def installed(cluster: Cluster) -> Iterator[None]:
    def namespace_ready() -> bool:
        got = cluster.kubectl("get", "namespace", NS, "-o", "json", check=False)
        if got.returncode != 0:
            cluster.kubectl("create", "namespace", NS, check=False)
            return False
        return bool(json.loads(got.stdout)["status"]["phase"] == "Active")

    wait_for(namespace_ready, timeout=90, interval=1, what=f"namespace {NS} active")
    docs = workloads()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        yield
    finally:
        for doc in docs:
            cluster.kubectl(
                "delete", doc["kind"].lower(), doc["metadata"]["name"], "-n", NS,
                "--ignore-not-found", check=False,
            )  # fmt: skip


def test_doctor_names_what_is_missing_then_passes(cluster: Cluster, request: Any) -> None:
    install_crd(cluster)
    code, out = doctor(cluster, "-o", "json")
    findings = {f["check"]: f for f in json.loads(out)}
    if findings["operator"]["status"] == "fail":  # nothing else installed it in this session
        assert code == EXIT_DOCTOR
        assert "kubectl apply --server-side -k manifests/base" in findings["operator"]["fix"]
    assert findings["crd"]["status"] == "ok"
    assert findings["spot-notices"]["status"] == "fail"
    assert "8 spot node(s)" in findings["spot-notices"]["message"]
    assert "manifests/node-agent" in findings["spot-notices"]["fix"]
    assert findings["nodes/p5.48xlarge"]["status"] == "ok"

    request.getfixturevalue("installed")

    def available() -> bool:
        dep = cluster.get("deployment", "kubetrain-operator", "-n", NS)
        return int((dep.get("status") or {}).get("availableReplicas") or 0) >= 1

    wait_for(available, timeout=90, interval=1, what="operator deployment available")
    code, out = doctor(cluster, "--instance-type", "p5.48xlarge")
    assert code == EXIT_OK, out
    assert "[ok  ] operator: deployment/kubetrain-operator in kubetrain-system available" in out
    assert "version 0.1.0" in out
    assert "notices from: kubetrain node agent (kubetrain-system/kubetrain-node-agent)" in out
