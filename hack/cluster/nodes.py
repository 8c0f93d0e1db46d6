#!/usr/bin/env python3
"""Turn nodepools.yaml into EKS-shaped Node objects, for kwok (local) and kind clusters alike.

    nodes.py render                      # print the Node objects as YAML
    nodes.py apply --kubectl K           # create kwok nodes (labels, taints, allocatable)
    nodes.py apply --kubectl K --kind    # shape the existing kind workers the same way

Extended resources (nvidia.com/gpu, aws.amazon.com/neuron, vpc.amazonaws.com/efa, ...) are written
into node status by `status_patch`, the one piece both cluster flavours share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

POOLS_FILE = Path(__file__).with_name("nodepools.yaml")
KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}

# Zone name -> AZ id, as EKS labels topology.k8s.aws/zone-id.
ZONE_IDS = {"a": "az2", "b": "az1", "c": "az3", "d": "az4"}


def load_pools(path: Path = POOLS_FILE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def node_names(pool: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, zone) for each node of a pool, spread round-robin over its zones."""
    zones: list[str] = pool["zones"]
    out = []
    for i in range(pool["count"]):
        zone = zones[i % len(zones)]
        out.append((f"{pool['name']}-{zone[-1]}{i // len(zones)}", zone))
    return out


def labels_for(pool: dict[str, Any], name: str, zone: str, region: str) -> dict[str, str]:
    itype: str = pool["instanceType"]
    family, size = itype.split(".", 1)
    acc = pool.get("accelerator") or {}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": itype,
        "beta.kubernetes.io/instance-type": itype,
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": zone,
        "topology.k8s.aws/zone-id": f"usw2-{ZONE_IDS.get(zone[-1], 'az1')}",
    }
    capacity_type: str = pool["capacityType"]
    if pool["provisioner"] == "karpenter":
        labels |= {
            "karpenter.sh/capacity-type": capacity_type,
            "karpenter.sh/nodepool": pool["name"],
            "karpenter.sh/registered": "true",
            "karpenter.k8s.aws/instance-family": family,
            "karpenter.k8s.aws/instance-size": size,
        }
        if acc.get("kind") == "nvidia":
            labels |= {
                "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
                "karpenter.k8s.aws/instance-gpu-name": acc["name"],
                "karpenter.k8s.aws/instance-gpu-count": str(acc["count"]),
                "karpenter.k8s.aws/instance-gpu-memory": str(acc["memoryMiB"]),
            }
        elif acc.get("kind") == "neuron":
            labels |= {
                "karpenter.k8s.aws/instance-accelerator-manufacturer": "aws",
                "karpenter.k8s.aws/instance-accelerator-name": acc["name"],
                "karpenter.k8s.aws/instance-accelerator-count": str(acc["count"]),
            }
    else:
        labels |= {
            "eks.amazonaws.com/capacityType": capacity_type.upper().replace("-", "_"),
            "eks.amazonaws.com/nodegroup": pool["name"],
        }
    return labels


def resources_for(pool: dict[str, Any]) -> dict[str, str]:
    res = {str(k): str(v) for k, v in pool["allocatable"].items()}
    res["pods"] = "110"
    acc = pool.get("accelerator") or {}
    if acc.get("kind") == "nvidia":
        res["nvidia.com/gpu"] = str(acc["count"])
    elif acc.get("kind") == "neuron":
        res["aws.amazon.com/neuron"] = str(acc["count"])
        res["aws.amazon.com/neuroncore"] = str(acc["neuronCores"])
    if pool.get("efa"):
        res["vpc.amazonaws.com/efa"] = str(pool["efa"])
    return res


EXTENDED_PREFIXES = ("nvidia.com/", "aws.amazon.com/", "vpc.amazonaws.com/", "hugepages-")


def status_patch(resources: dict[str, str], extended_only: bool = False) -> dict[str, Any]:
    """The status patch that advertises a node's resources (all of them, or only extended ones)."""
    if extended_only:
        resources = {k: v for k, v in resources.items() if k.startswith(EXTENDED_PREFIXES)}
    return {"status": {"capacity": dict(resources), "allocatable": dict(resources)}}


def render(pools: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    pools = pools or load_pools()
    region: str = pools["region"]
    nodes = []
    for pool in pools["pools"]:
        for name, zone in node_names(pool):
            instance_id = "i-0" + hashlib.sha256(name.encode()).hexdigest()[:16]
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": dict(KWOK_ANNOTATION),
                        "labels": labels_for(pool, name, zone, region),
                    },
                    "spec": {
                        "providerID": f"aws:///{zone}/{instance_id}",
                        "taints": [dict(t) for t in pool.get("taints", [])],
                    },
                }
                | status_patch(resources_for(pool))
            )
    return nodes


def _kubectl(kubectl: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [kubectl, *args], input=stdin, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply_kwok(kubectl: str) -> None:
    nodes = render()
    _kubectl(kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(nodes))
    for node in nodes:  # create may drop status on some versions; the status patch is authoritative
        patch = json.dumps({"status": node["status"]})
        _kubectl(
            kubectl,
            "patch",
            "node",
            node["metadata"]["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        )


def apply_kind(kubectl: str) -> None:
    """Map each pool node onto an existing kind worker, in order, and shape it like EKS."""
    out = _kubectl(
        kubectl,
        "get",
        "nodes",
        "-l",
        "!node-role.kubernetes.io/control-plane",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    )
    workers = sorted(out.split())
    nodes = render()
    if len(workers) < len(nodes):
        print(
            f"note: {len(workers)} kind workers for {len(nodes)} pool nodes; "
            "shaping the first ones",
            file=sys.stderr,
        )
    for worker, node in zip(workers, nodes, strict=False):
        labels = dict(node["metadata"]["labels"], **{"kubernetes.io/hostname": worker})
        _kubectl(
            kubectl,
            "label",
            "node",
            worker,
            "--overwrite",
            *[f"{k}={v}" for k, v in labels.items()],
        )
        for t in node["spec"]["taints"]:
            _kubectl(
                kubectl,
                "taint",
                "node",
                worker,
                "--overwrite",
                f"{t['key']}={t['value']}:{t['effect']}",
            )
        patch = status_patch(node["status"]["allocatable"], extended_only=True)
        _kubectl(
            kubectl,
            "patch",
            "node",
            worker,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["render", "apply"])
    p.add_argument("--kubectl", default="kubectl")
    p.add_argument("--kind", action="store_true", help="shape existing kind workers")
    args = p.parse_args()
    if args.command == "render":
        print(yaml.safe_dump_all(render()), end="")
    elif args.kind:
        apply_kind(args.kubectl)
    else:
        apply_kwok(args.kubectl)


if __name__ == "__main__":
    main()
