"""The node agent's kustomize directory and CLI agree with the code and the shared constants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain.api import constants as c
from kubetrain.nodeagent.__main__ import parse_args

DIR = Path(__file__).resolve().parents[2] / "manifests" / "node-agent"


def _docs() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    files = sorted(p.name for p in DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files  # nothing left out of the build
    assert kustomization["namespace"] == c.OPERATOR_NAMESPACE
    docs = [d for f in files for d in yaml.safe_load_all((DIR / f).read_text()) if d]
    return {d["kind"]: d for d in docs}


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _docs()["DaemonSet"]["spec"]["template"]["spec"]
    return spec


def _tolerates(tolerations: list[dict[str, Any]], key: str, effect: str) -> bool:
    return any(
        (t.get("key") in (None, key))
        and t.get("operator") == "Exists"
        and t.get("effect") in (None, effect)
        for t in tolerations
    )


def test_rbac_is_get_and_patch_nodes_only() -> None:
    docs = _docs()
    assert docs["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}
    ]
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": _pod_spec()["serviceAccountName"],
            "namespace": c.OPERATOR_NAMESPACE,
        }
    ]
    assert docs["ServiceAccount"]["metadata"]["name"] == _pod_spec()["serviceAccountName"]


def test_daemonset_runs_the_agent_on_the_host_network() -> None:
    spec = _pod_spec()
    assert spec["hostNetwork"] is True  # IMDSv2 hop limit 1 on EKS AL2023 nodes
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "kubetrain.nodeagent"]
    node_name = next(e for e in container["env"] if e["name"] == "NODE_NAME")
    assert node_name["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    args = parse_args([*container["args"], "--node-name", "n"])  # the shipped args parse
    assert args.interval == 1.0


def test_daemonset_selects_spot_nodes_in_both_dialects() -> None:
    terms = _pod_spec()["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
            ]
        },
        {
            "matchExpressions": [
                {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["SPOT"]}
            ]
        },
    ]


@pytest.mark.parametrize(
    ("key", "effect", "tolerated"),
    [
        ("nvidia.com/gpu", "NoSchedule", True),
        ("nvidia.com/gpu", "NoExecute", True),
        ("aws.amazon.com/neuron", "NoSchedule", True),
        (c.TAINT_KUBETRAIN_SPOT_ITN, "NoSchedule", True),
        (c.TAINT_KUBETRAIN_REBALANCE, "NoSchedule", True),
        (c.TAINT_NTH_SPOT_ITN, "NoSchedule", True),
        (c.TAINT_KARPENTER_DISRUPTED, "NoSchedule", True),
        ("node.kubernetes.io/unschedulable", "NoSchedule", True),
        (c.TAINT_OUT_OF_SERVICE, "NoExecute", False),  # the node is gone: so is the agent
    ],
)
def test_daemonset_tolerations(key: str, effect: str, tolerated: bool) -> None:
    assert _tolerates(_pod_spec()["tolerations"], key, effect) is tolerated


def test_cli_requires_node_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(SystemExit):
        parse_args([])
    assert "set NODE_NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "endpoint"),
    [
        ([], {}, "http://169.254.169.254"),
        (
            [],
            {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338"},
            "http://127.0.0.1:1338",
        ),
        (
            ["--imds-endpoint", "http://[fd00:ec2::254]"],
            {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://x"},
            "http://[fd00:ec2::254]",
        ),
    ],
)
def test_cli_imds_endpoint(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], endpoint: str
) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NODE_NAME", "n")
    assert parse_args(argv).imds_endpoint == endpoint
