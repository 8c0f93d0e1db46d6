"""Helpers for the operator integration tests: CRD install, job manifests, status polling.

Not a test module (no test_ prefix); imported by tests/integration/test_operator_*.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from cluster import Cluster
from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB
from support import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "trainingjob.yaml"


def crd_yaml() -> str:
    """The committed CRD when it exists, else the generator's output (same source of truth).

    KUBETRAIN_TEST_CRD points at another file (debugging a CRD change before committing it).
    """
    override = os.environ.get("KUBETRAIN_TEST_CRD")
    if override:
        return Path(override).read_text()
    if CRD_FILE.exists():
        return CRD_FILE.read_text()
    from kubetrain.api.crd import render

    return render()


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd_yaml())

    def established() -> bool:
        crd = cluster.get("crd", "trainingjobs.kubetrain.dev")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    # Not `kubectl wait`: it errors out when it reads the CRD before its first status write.
    wait_for(established, timeout=60, interval=0.2, what="the TrainingJob CRD Established")


# The simulated workload of an operator test exits as soon as its pod is deleted (SIGTERM), as
# kubetrain's runtime does after its emergency save. kwok keeps a deleted pod running until its
# grace period ends otherwise (115 s by default), like a kubelet: a job whose ranks ignore SIGTERM
# (or hang in a collective after a peer died) waits that long for its next attempt, because the
# operator deletes a failed gang's survivors with their full grace (issue 8 finding).
SIGTERM_EXITS = {"metadata": {"annotations": {"sim.test/sigterm-exit-code": "143"}}}


def job_manifest(name: str, *, real_workload: bool = False, **spec: Any) -> dict[str, Any]:
    """A TrainingJob. Its simulated pods exit on SIGTERM, unless `podTemplate` is given or
    `real_workload` (the stand-in kubelet runs real processes, whose exits are reported)."""
    base: dict[str, Any] = {
        **({} if real_workload else {"podTemplate": SIGTERM_EXITS}),
        "image": "registry.example/train:1",
        "command": ["python", "train.py"],
        "nodes": 2,
        "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
        "failurePolicy": {"maxRestarts": 1, "maxInterruptions": 3, "backoffSeconds": 0},
        "startupTimeoutSeconds": 120,
    }
    base.update(spec)
    return {
        "apiVersion": "kubetrain.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": base,
    }


def apply(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


# What the admission policy (the chart's templates/admission.yaml) says when it refuses hostNetwork.
HOST_NETWORK_REFUSED = "spec.podTemplate.spec.hostNetwork: hostNetwork: true is not allowed"


def admits_host_network(cluster: Cluster, ns: str) -> bool:
    """Whether the API server admits a job with `hostNetwork: true` (a server-side dry run: the
    admission policy runs, nothing is stored). A refusal must be the policy's."""
    manifest = job_manifest("hostnet", nodes=1, podTemplate={"spec": {"hostNetwork": True}})
    out = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        ns,
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
        check=False,
    )
    if out.returncode == 0:
        return True
    assert HOST_NETWORK_REFUSED in out.stderr and "kubetrain-privileged-pod-templates" in out.stderr
    return False


def job(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get("trainingjob", name, "-n", ns)


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = job(cluster, ns, name).get("status") or {}
    return out


def pods(cluster: Cluster, ns: str, name: str, attempt: int | None = None) -> list[dict[str, Any]]:
    selector = f"{LABEL_JOB}={name}" + (f",{LABEL_ATTEMPT}={attempt}" if attempt else "")
    items: list[dict[str, Any]] = cluster.get("pods", "-n", ns, "-l", selector)["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def live_pods(
    cluster: Cluster, ns: str, name: str, attempt: int | None = None
) -> list[dict[str, Any]]:
    return [
        p for p in pods(cluster, ns, name, attempt) if not p["metadata"].get("deletionTimestamp")
    ]


def wait_phase(
    cluster: Cluster, ns: str, name: str, phase: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = status(cluster, ns, name)
        return st if st.get("phase") == phase else None

    return wait_for(reached, timeout=timeout, interval=0.3, what=f"{name} phase {phase}")


def running_pods(
    cluster: Cluster, ns: str, name: str, attempt: int, n: int
) -> list[dict[str, Any]]:
    def all_running() -> list[dict[str, Any]] | None:
        items = live_pods(cluster, ns, name, attempt)
        ok = len(items) == n and all(p["status"].get("phase") == "Running" for p in items)
        return items if ok else None

    return wait_for(
        all_running, timeout=60, interval=0.3, what=f"{n} running pods of attempt {attempt}"
    )


def events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cluster, ns, name)]


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def dump(cluster: Cluster, ns: str) -> str:
    """What to print when a wait fails: the jobs, pods and events of the namespace."""
    out = []
    for kind in ("trainingjobs", "pods", "events"):
        proc = cluster.kubectl("get", kind, "-n", ns, "-o", "json", check=False)
        try:
            items = json.loads(proc.stdout)["items"]
        except (ValueError, KeyError):
            items = proc.stderr
        out.append(f"--- {kind}: {json.dumps(items, indent=1)[:6000]}")
    return "\n".join(out)


def refused_requests(log: str, *also: str) -> list[str]:
    """The operator log's lines for requests the API server refused for want of a grant (HTTP
    403), and those holding any of `also`. Not a bare "403": timestamps' milliseconds hold it."""
    pattern = "|".join(["HTTP 403", "Forbidden", *map(re.escape, also)])
    return re.findall(rf".*(?:{pattern}).*", log)
