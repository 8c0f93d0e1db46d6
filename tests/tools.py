"""The pinned Go tools (hack/tools/pins.tsv) as test subprocesses: amazon-ec2-metadata-mock, AWS Node
Termination Handler (IMDS mode, in-cluster credentials in a private mount namespace) and
Karpenter's kwok provider. Importable as `tools` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from cluster import ROOT, Cluster
from support import free_port, wait_for

TOOLS_SH = ROOT / "hack" / "tools.sh"


def tool(name: str) -> Path:
    """The pinned tool's binary, built by hack/tools.sh when missing or stale (idempotent)."""
    built = subprocess.run([str(TOOLS_SH), name], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(
            f"hack/tools.sh {name} failed (needs Go and the module proxy):\n{built.stderr[-3000:]}"
        )
    tools_dir = subprocess.run(
        [str(TOOLS_SH), "--print"], check=True, capture_output=True, text=True
    ).stdout.strip()
    binary = Path(tools_dir) / name
    assert os.access(binary, os.X_OK), f"hack/tools.sh did not produce {binary}"
    return binary


def module_dir(name: str) -> Path:
    """The source of the tool's pinned module (CRDs, examples), from the Go module cache."""
    out = subprocess.run(
        [str(TOOLS_SH), "--module", name], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


class Proc:
    """A subprocess whose combined output is collected in a file (read while it runs)."""

    def __init__(self, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            args,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=log.parent,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return self.popen.returncode


def http_status(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def start_aemm(log_dir: Path, *args: str, name: str = "aemm") -> tuple[str, Proc]:
    """amazon-ec2-metadata-mock on 127.0.0.1:<free port>, IMDSv2 only; returns once it issues
    tokens. `args` are AEMM's (e.g. "spot", "--action", "terminate", "--time", ...)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    binary = tool("ec2-metadata-mock")
    proc = Proc(
        [str(binary), *args, "--imdsv2", "-n", "127.0.0.1", "-p", str(port)],
        log_dir / f"{name}.log",
    )
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    try:
        wait_for(
            lambda: http_status(url + "/latest/api/token", ttl, "PUT") == 200, 30, what="AEMM up"
        )
    except BaseException:
        proc.stop()
        raise
    return url, proc


# --- AWS Node Termination Handler ------------------------------------------------------------------

NTH_NAMESPACE = "kube-system"
NTH_ACCOUNT = "aws-node-termination-handler"
# The ClusterRole of NTH's Helm chart (config/helm/aws-node-termination-handler, v1.25.1), events on.
NTH_RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {NTH_ACCOUNT}, namespace: {NTH_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {NTH_ACCOUNT}}}
rules:
- {{apiGroups: [""], resources: [nodes], verbs: [get, list, patch, update]}}
- {{apiGroups: [""], resources: [pods], verbs: [list, get]}}
- {{apiGroups: [""], resources: [pods/eviction], verbs: [create]}}
- {{apiGroups: [extensions, apps], resources: [daemonsets], verbs: [get]}}
- {{apiGroups: [""], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {NTH_ACCOUNT}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {NTH_ACCOUNT}}}
subjects:
- {{kind: ServiceAccount, name: {NTH_ACCOUNT}, namespace: {NTH_NAMESPACE}}}
"""

# NTH reads only in-cluster credentials (/var/run/secrets/kubernetes.io/serviceaccount). Give it
# them in a mount namespace of its own: a tmpfs over /run (where /var/run points) holding a
# ServiceAccount token and the API server's CA, invisible to every other process.
IN_CLUSTER = """
set -eu
mount -t tmpfs nth-run "$(readlink -f /var/run)"
sa=/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$sa"
cp "$1/token" "$1/ca.crt" "$1/namespace" "$sa/"
shift
exec "$@"
"""


def start_nth(cluster: Cluster, node: str, imds_url: str, log_dir: Path, **env: str) -> Proc:
    """AWS Node Termination Handler in IMDS mode for `node`, fed by the IMDS at `imds_url`: on a
    spot interruption notice it taints (`aws-node-termination-handler/spot-itn`), cordons and
    drains the node through the eviction API, as the DaemonSet does on EKS."""
    binary = tool("node-termination-handler")
    cluster.kubectl("apply", "-f", "-", input=NTH_RBAC)
    token = cluster.kubectl(
        "create", "token", NTH_ACCOUNT, "-n", NTH_NAMESPACE, "--duration=2h"
    ).stdout.strip()
    creds = log_dir / "nth-serviceaccount"
    creds.mkdir(exist_ok=True)
    (creds / "token").write_text(token)
    (creds / "ca.crt").write_bytes((cluster.run_dir / "pki" / "apiserver.crt").read_bytes())
    (creds / "namespace").write_text(NTH_NAMESPACE)
    server = next(
        line.split('"')[1]
        for line in Path(cluster.kubeconfig).read_text().splitlines()
        if "server:" in line
    )  # https://127.0.0.1:<port>
    host, port = server.removeprefix("https://").rsplit(":", 1)
    nth_env = {
        "PATH": os.environ["PATH"],
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "NODE_NAME": node,
        "POD_NAME": f"nth-{node}",
        "NAMESPACE": NTH_NAMESPACE,
        "INSTANCE_METADATA_URL": imds_url,
        "ENABLE_SPOT_INTERRUPTION_DRAINING": "true",
        # AEMM's spot mode serves no scheduled events (404), on which NTH's scheduled-event
        # monitor panics after a few polls.
        "ENABLE_SCHEDULED_EVENT_DRAINING": "false",
        "ENABLE_REBALANCE_MONITORING": "false",
        "ENABLE_REBALANCE_DRAINING": "false",
        "TAINT_NODE": "true",
        "DELETE_LOCAL_DATA": "true",
        "IGNORE_DAEMON_SETS": "true",
        "POD_TERMINATION_GRACE_PERIOD": "-1",  # each pod's own, as the Helm chart's default
        "NODE_TERMINATION_GRACE_PERIOD": "120",
        "EMIT_KUBERNETES_EVENTS": "true",
        "ENABLE_PROMETHEUS_SERVER": "false",
        "ENABLE_PROBES_SERVER": "false",
        "METADATA_TRIES": "3",
        "LOG_LEVEL": "debug",
        **env,
    }
    args = ["unshare", "-m", "--propagation", "private", "sh", "-c", IN_CLUSTER, "nth"]
    return Proc([*args, str(creds), str(binary)], log_dir / "nth.log", nth_env)


# --- Karpenter (kwok provider) ---------------------------------------------------------------------

KARPENTER_LABEL = "kubetrain.test/provisioner"  # on the nodes of the drill's NodePool only
KARPENTER_NODEPOOL = "kubetrain-drill"
KARPENTER_CRDS = (  # in the pinned module sigs.k8s.io/karpenter
    "pkg/apis/crds/karpenter.sh_nodepools.yaml",
    "pkg/apis/crds/karpenter.sh_nodeclaims.yaml",
    "kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml",
)


def p5_instance_types(zones: tuple[str, ...]) -> list[dict[str, object]]:
    """Karpenter kwok instance types: p5.48xlarge as hack/cluster/nodepools.yaml shapes it."""
    offerings = [
        {
            "Price": price,
            "Available": True,
            "Requirements": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
            ],
        }
        for zone in zones
        for capacity, price in (("spot", 32.0), ("on-demand", 98.32))
    ]
    resources = {
        "cpu": "192",
        "memory": "2048Gi",
        "ephemeral-storage": "27Ti",
        "hugepages-2Mi": "10Gi",
        "nvidia.com/gpu": "8",
        "vpc.amazonaws.com/efa": "32",
        "pods": "110",
    }
    return [
        {
            "name": "p5.48xlarge",
            "offerings": offerings,
            "architecture": "amd64",
            "operatingSystems": ["linux"],
            "resources": resources,
        }
    ]


def karpenter_objects(zones: tuple[str, ...]) -> str:
    """A KWOKNodeClass and a NodePool of p5 spot nodes that only the drill's pods select."""
    return f"""
apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata: {{name: {KARPENTER_NODEPOOL}}}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: {KARPENTER_NODEPOOL}}}
spec:
  template:
    metadata:
      labels: {{{KARPENTER_LABEL}: karpenter-kwok}}
    spec:
      nodeClassRef: {{group: karpenter.kwok.sh, kind: KWOKNodeClass, name: {KARPENTER_NODEPOOL}}}
      requirements:
      - {{key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge]}}
      - {{key: karpenter.sh/capacity-type, operator: In, values: [spot]}}
      - {{key: topology.kubernetes.io/zone, operator: In, values: [{", ".join(zones)}]}}
      taints: [{{key: nvidia.com/gpu, value: "true", effect: NoSchedule}}]
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: Never
"""


def start_karpenter(cluster: Cluster, log_dir: Path, zones: tuple[str, ...]) -> Proc:
    """Karpenter v1.6's kwok provider against the cluster: its CRDs, a Ready KWOKNodeClass and a
    NodePool of p5 spot nodes (labelled KARPENTER_LABEL), then the controller as a subprocess.
    Its nodes carry kwok's annotation, so the cluster's kwok runs them like the pool nodes."""
    import json

    binary = tool("karpenter-kwok")
    source = module_dir("karpenter-kwok")
    for crd in KARPENTER_CRDS:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(source / crd))
    for crd in (
        "nodepools.karpenter.sh",
        "nodeclaims.karpenter.sh",
        "kwoknodeclasses.karpenter.kwok.sh",
    ):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    wait_for(
        lambda: (
            cluster.kubectl(
                "apply", "-f", "-", input=karpenter_objects(zones), check=False
            ).returncode
            == 0
        ),
        timeout=30,
        what="Karpenter NodePool and KWOKNodeClass created",
    )
    # No controller readies a KWOKNodeClass; a NodePool whose class is not Ready provisions nothing.
    ready = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ]
        }
    }
    cluster.kubectl(
        "patch",
        "kwoknodeclass",
        KARPENTER_NODEPOOL,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(ready),
    )
    types_file = log_dir / "instance-types.json"
    types_file.write_text(json.dumps(p5_instance_types(zones)))
    env = {
        **cluster.env(),
        "SYSTEM_NAMESPACE": "kube-system",
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(free_port()),
        "HEALTH_PROBE_PORT": str(free_port()),
        "INSTANCE_TYPES_FILE_PATH": str(types_file),
        "LOG_LEVEL": "debug",
        "BATCH_IDLE_DURATION": "1s",
        "BATCH_MAX_DURATION": "3s",
    }
    return Proc([str(binary)], log_dir / "karpenter.log", env)


def stop_karpenter(cluster: Cluster, karpenter: Proc) -> None:
    """Take the drill's NodePool and everything Karpenter made away, then stop it; what is left
    (its finalizers need the controller) is released by hand."""
    cluster.kubectl(
        "delete", "nodepool", KARPENTER_NODEPOOL, "--timeout=60s", "--ignore-not-found", check=False
    )
    cluster.kubectl("delete", "nodeclaims", "--all", "--timeout=60s", check=False)
    karpenter.stop()
    for kind in ("nodeclaims", "nodes"):
        names = cluster.kubectl(
            "get", kind, "-l", f"karpenter.sh/nodepool={KARPENTER_NODEPOOL}", "-o", "name"
        ).stdout.split()
        for name in names:
            cluster.kubectl(
                "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
            )
            cluster.kubectl("delete", name, "--wait=false", "--ignore-not-found", check=False)
    cluster.kubectl(
        "delete",
        "kwoknodeclass",
        KARPENTER_NODEPOOL,
        "--ignore-not-found",
        "--wait=false",
        check=False,
    )
