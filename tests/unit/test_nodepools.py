"""hack/cluster/nodes.py: the simulated pools match what the issue and EKS promise."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster import nodepools


def test_pools_have_the_promised_sizes_and_spread_over_two_zones() -> None:
    nodes = nodepools.render()
    types = Counter(n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in nodes)
    assert types == {"p5.48xlarge": 8, "p4d.24xlarge": 2, "trn1.32xlarge": 4, "g5.12xlarge": 2}
    for itype in types:
        zones = Counter(
            n["metadata"]["labels"]["topology.kubernetes.io/zone"]
            for n in nodes
            if n["metadata"]["labels"]["node.kubernetes.io/instance-type"] == itype
        )
        assert set(zones) == {"us-west-2a", "us-west-2b"}, itype
        assert len(set(zones.values())) == 1, f"{itype} is not spread evenly: {zones}"
    assert len({n["metadata"]["name"] for n in nodes}) == len(nodes)


@pytest.mark.parametrize(
    ("name", "label", "value"),
    [
        ("p5-spot-a0", "karpenter.sh/capacity-type", "spot"),
        ("p4d-od-b0", "eks.amazonaws.com/capacityType", "ON_DEMAND"),
        ("trn1-od-a1", "karpenter.k8s.aws/instance-accelerator-count", "16"),
        ("g5-od-a0", "eks.amazonaws.com/nodegroup", "g5-od"),
    ],
)
def test_capacity_labels_use_the_provisioner_dialect(name: str, label: str, value: str) -> None:
    node = next(n for n in nodepools.render() if n["metadata"]["name"] == name)
    assert node["metadata"]["labels"][label] == value


def test_kind_patch_carries_only_extended_resources() -> None:
    resources = {
        "cpu": "96",
        "memory": "1Ti",
        "nvidia.com/gpu": "8",
        "hugepages-2Mi": "1Gi",
        "vpc.amazonaws.com/efa": "4",
        "aws.amazon.com/neuron": "16",
    }
    patch = nodepools.status_patch(resources, extended_only=True)
    assert patch["status"]["capacity"] == {
        "nvidia.com/gpu": "8",
        "hugepages-2Mi": "1Gi",
        "vpc.amazonaws.com/efa": "4",
        "aws.amazon.com/neuron": "16",
    }
    assert patch["status"]["allocatable"] == patch["status"]["capacity"]


def test_g5_has_no_efa_and_trainium_has_neuron_cores() -> None:
    by_name = {n["metadata"]["name"]: n for n in nodepools.render()}
    assert "vpc.amazonaws.com/efa" not in by_name["g5-od-a0"]["status"]["allocatable"]
    assert by_name["trn1-od-b1"]["status"]["allocatable"]["aws.amazon.com/neuroncore"] == "32"
    assert by_name["trn1-od-b1"]["spec"]["taints"][0]["key"] == "aws.amazon.com/neuron"
