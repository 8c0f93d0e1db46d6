"""The local control plane as a test fixture: the same hack/cluster.sh users run, plus helpers that
drive the simulated kubelet (kwok stages) and nodes the way a real EKS cluster would behave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "hack" / "cluster.sh"
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
import nodes as nodepools  # noqa: E402  (hack/cluster/nodes.py: the one definition of the pools)


def cluster_sh(command: str, run_dir: Path, gang: str = "") -> str:
    """`gang`: "native" creates a cluster that serves PodGroups (KUBETRAIN_CLUSTER_GANG)."""
    env = dict(
        os.environ,
        KUBETRAIN_CLUSTER_DIR=str(run_dir),
        PYTHON=sys.executable,
        KUBETRAIN_CLUSTER_GANG=gang,
    )
    proc = subprocess.run(
        [str(CLUSTER_SH), command], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"hack/cluster.sh {command} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass
class Cluster:
    run_dir: Path
    kubeconfig: str
    bin_dir: Path
    _mutated_nodes: set[str] = field(default_factory=set)

    # --- plumbing -----------------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
            )
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def credentials(self) -> Callable[[], Any]:
        """This cluster's kopf.ConnectionInfo, what kubetrain.k8s.Kube(credentials) takes."""
        from kubetrain.k8s import login

        with mock.patch.dict(os.environ, {"KUBECONFIG": self.kubeconfig}):
            info = login()
        return lambda: info

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should talk to this cluster."""
        return dict(
            os.environ, KUBECONFIG=self.kubeconfig, PATH=f"{self.bin_dir}:{os.environ['PATH']}"
        )

    def changes_until_deleted(self, pod: dict[str, Any], timeout: int) -> list[tuple[str, Any]]:
        """(event type, V1Pod) for every change of `pod` after the version given, from a watch,
        until it is DELETED or `timeout` seconds pass (a watch sees states a poll can miss)."""
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api_client())
        meta = pod["metadata"]
        seen = []
        for event in watch.Watch().stream(
            core.list_namespaced_pod,
            meta["namespace"],
            field_selector=f"metadata.name={meta['name']}",
            resource_version=meta["resourceVersion"],
            timeout_seconds=timeout,
        ):
            seen.append((event["type"], event["object"]))
            if event["type"] == "DELETED":
                break
        return seen

    # --- simulated kubelet: pod outcomes --------------------------------------------------------
    def set_pod_outcome(
        self, namespace: str, pod: str, outcome: str, exit_code: int = 1, after: str = "0s"
    ) -> None:
        """Make a running pod finish: outcome "Succeeded" or "Failed" (with exit_code)."""
        if outcome not in ("Succeeded", "Failed"):
            raise ValueError(f"outcome must be Succeeded or Failed, not {outcome!r}")
        self.kubectl(
            "annotate",
            "pod",
            pod,
            "-n",
            namespace,
            "--overwrite",
            f"sim.test/exit-code={exit_code}",
            f"sim.test/after={after}",
            f"sim.test/outcome={outcome}",
        )

    # --- nodes ----------------------------------------------------------------------------------
    def node_spec(self, name: str) -> dict[str, Any]:
        for node in nodepools.render():
            if node["metadata"]["name"] == name:
                return node
        raise KeyError(f"no node {name!r} in hack/cluster/nodepools.yaml")

    def make_node_not_ready(self, name: str) -> None:
        self._mutated_nodes.add(name)
        self.kubectl("label", "node", name, "--overwrite", "sim.test/not-ready=true")

    def make_node_ready(self, name: str) -> None:
        self.kubectl("label", "node", name, "sim.test/not-ready-")

    def lose_node(self, name: str) -> None:
        """The node stops heartbeating (kwok lets go of it): it turns Unknown after the grace
        period and its pods stay Terminating, as on a lost EC2 instance."""
        self._mutated_nodes.add(name)
        self.kubectl("annotate", "node", name, "kwok.x-k8s.io/node-")

    def delete_node(self, name: str) -> None:
        self._mutated_nodes.add(name)
        self.kubectl("delete", "node", name, "--wait=false")

    def taint_node(self, name: str, key: str, value: str = "", effect: str = "NoSchedule") -> None:
        self._mutated_nodes.add(name)
        self.kubectl("taint", "node", name, "--overwrite", f"{key}={value}:{effect}")

    def cordon(self, name: str) -> None:
        self._mutated_nodes.add(name)
        self.kubectl("cordon", name)

    def add_node(self, node: dict[str, Any]) -> None:
        """Create a node (an object shaped like nodepools.render()'s) and advertise its resources."""
        self._mutated_nodes.add(node["metadata"]["name"])
        self._create_node(node)

    def _create_node(self, node: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(node))
        patch = json.dumps({"status": node["status"]})
        self.kubectl(
            "patch",
            "node",
            node["metadata"]["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        )

    def restore_nodes(self) -> None:
        """Put every node a test touched back to its pool definition (re-created if deleted)."""
        pool = {n["metadata"]["name"]: n for n in nodepools.render()}
        for name in sorted(self._mutated_nodes):
            self.kubectl(
                "delete",
                "node",
                name,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
                check=False,
            )
            if name in pool:
                self._create_node(pool[name])
        if self._mutated_nodes:
            self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
        self._mutated_nodes.clear()


def start_cluster(run_dir: Path, gang: str = "") -> Cluster:
    cluster_sh("up", run_dir, gang)
    bin_dir = Path(cluster_sh("bin", run_dir).strip())
    return Cluster(run_dir=run_dir, kubeconfig=str(run_dir / "kubeconfig"), bin_dir=bin_dir)
