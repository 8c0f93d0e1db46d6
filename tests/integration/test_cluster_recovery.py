"""`hack/cluster.sh up` after a crash brings back only what died, as it was (issue 8, defect 9).

A cluster of its own (the session cluster stays untouched): its API server is SIGKILLed, then etcd
and kwok; each time `up` must restart just those, on the same ports, over the same etcd data, so
the CRD, a TrainingJob and a client made before the crash (a running operator) all carry on.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from operator_harness import install_crd, job_manifest

from cluster import ROOT, Cluster, cluster_sh, start_cluster
from support import wait_for

pytestmark = pytest.mark.cluster

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    run_dir = ROOT / ".cache" / "cluster" / f"recover-{os.getpid()}"
    c = start_cluster(run_dir)
    try:
        yield c
    finally:
        cluster_sh("down", run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def pids(c: Cluster) -> dict[str, int]:
    return {name: int((c.run_dir / "pids" / name).read_text()) for name in COMPONENTS}


def running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def crash(c: Cluster, *names: str) -> None:
    for name in names:
        pid = pids(c)[name]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: not running(pid), timeout=30, what=f"{name} ({pid}) gone")


def test_up_after_a_crash_restarts_what_died_on_the_same_ports_with_the_same_data(
    own_cluster: Cluster,
) -> None:
    c = own_cluster
    ports = (c.run_dir / "ports").read_text()
    kubeconfig = Path(c.kubeconfig).read_text()
    install_crd(c)
    c.kubectl("create", "namespace", "survivor")
    c.kubectl("apply", "-n", "survivor", "-f", "-", input=yaml.safe_dump(job_manifest("survivor")))
    uid = c.get("trainingjob", "survivor", "-n", "survivor")["metadata"]["uid"]
    from kubernetes import client

    core = client.CoreV1Api(c.api_client())  # made before the crash, like a running operator's
    before = pids(c)

    # 1. The API server dies.
    crash(c, "kube-apiserver")
    assert c.kubectl("get", "--raw", "/readyz", check=False).returncode != 0
    cluster_sh("up", c.run_dir)

    after = pids(c)
    assert after["kube-apiserver"] != before["kube-apiserver"]
    assert {k: v for k, v in after.items() if k != "kube-apiserver"} == {
        k: v for k, v in before.items() if k != "kube-apiserver"
    }, "only the API server was restarted"
    assert (c.run_dir / "ports").read_text() == ports
    assert Path(c.kubeconfig).read_text() == kubeconfig  # same port, token and CA file
    assert c.get("crd", "trainingjobs.kubetrain.dev")["metadata"]["name"]
    assert c.get("trainingjob", "survivor", "-n", "survivor")["metadata"]["uid"] == uid
    # The old client trusts the restarted server (same serving certificate) on the same port.
    assert "survivor" in {ns.metadata.name for ns in core.list_namespace().items}

    # 2. etcd and kwok die together: the data is still there and the nodes come back Ready.
    crash(c, "etcd", "kwok")
    cluster_sh("up", c.run_dir)
    again = pids(c)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert again[name] == after[name], f"{name} was restarted though it was running"
    for name in ("etcd", "kwok"):
        assert again[name] != after[name] and running(again[name])
    assert (c.run_dir / "ports").read_text() == ports
    assert c.get("trainingjob", "survivor", "-n", "survivor")["metadata"]["uid"] == uid
    assert "survivor" in {ns.metadata.name for ns in core.list_namespace().items}

    # The restarted kwok runs pods again.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "after-crash"},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "main", "image": "train:1"}],
        },
    }
    c.kubectl("apply", "-n", "survivor", "-f", "-", input=yaml.safe_dump(pod))
    wait_for(
        lambda: c.get("pod", "after-crash", "-n", "survivor")["status"].get("phase") == "Running",
        timeout=60,
        what="a pod Running after the crash",
    )
