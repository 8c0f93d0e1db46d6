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
