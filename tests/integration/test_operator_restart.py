"""The operator killed in the middle of creating a gang, then restarted: exactly one set of pods.

Runs the real entry point (`python -m kubetrain`) as a subprocess; the first one through
failpoint_operator.py, which makes it exit hard (os._exit, no cleanup) right after it created
rank 0 of a 2-pod gang.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_harness import (
    apply,
    install_crd,
    job_manifest,
    pods,
    running_pods,
    status,
    wait_phase,
)

from cluster import Cluster
from support import wait_for

FAILPOINT = Path(__file__).with_name("failpoint_operator.py")

pytestmark = pytest.mark.cluster
NODES = 2  # the pools hold 2 p5 nodes per zone and a gang lives in one zone
CREATES_BEFORE_RANK0 = 4  # ServiceAccount, Role, RoleBinding, Service (no FSx in this job)


def start_operator(
    cluster: Cluster, namespace: str, die_after_creates: int | None = None
) -> subprocess.Popen[str]:
    entry = ["-m", "kubetrain"]
    if die_after_creates is not None:
        entry = [str(FAILPOINT), str(die_after_creates)]
    return subprocess.Popen(
        [sys.executable, *entry, "--standalone", "--namespace", namespace],
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def procs(cluster: Cluster, namespace: str) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    cluster.kubectl(
        "delete", "trainingjobs", "--all", "-n", namespace, "--timeout=60s", check=False
    )
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    wait_for(
        lambda: cluster.get("pods", "-n", namespace)["items"] == [], timeout=60, what="pods gone"
    )


def test_operator_killed_mid_creation_converges_to_one_gang(
    cluster: Cluster, namespace: str, procs: list[subprocess.Popen[str]]
) -> None:
    install_crd(cluster)
    apply(cluster, namespace, job_manifest("resilient", nodes=NODES))
    first = start_operator(cluster, namespace, die_after_creates=CREATES_BEFORE_RANK0 + 1)
    procs.append(first)
    try:
        first.wait(timeout=60)
    except subprocess.TimeoutExpired:
        first.kill()
        pytest.fail(
            "operator did not hit the failpoint:\n" + (first.stdout.read() if first.stdout else "")
        )
    assert first.returncode == 86, first.stdout.read() if first.stdout else ""
    # The crash left part of the gang (the pods go out at once: the ones whose requests were in
    # flight may exist too) and no status for it.
    partial = pods(cluster, namespace, "resilient")
    gang = {f"resilient-1-{r}" for r in range(NODES)}
    assert partial and {p["metadata"]["name"] for p in partial} <= gang
    assert status(cluster, namespace, "resilient").get("attempt", 0) == 0

    second = start_operator(cluster, namespace)
    procs.append(second)
    running_pods(cluster, namespace, "resilient", attempt=1, n=NODES)
    st = wait_phase(cluster, namespace, "resilient", "Running")
    assert st["attempt"] == 1
    assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
    names = sorted(p["metadata"]["name"] for p in pods(cluster, namespace, "resilient"))
    assert names == [f"resilient-1-{r}" for r in range(NODES)]
    # The pods created before the crash are the same objects, not replacements.
    assert {p["metadata"]["uid"] for p in partial} <= {
        p["metadata"]["uid"] for p in pods(cluster, namespace, "resilient")
    }


def test_a_pod_deleted_while_the_operator_is_down_restarts_the_whole_gang(
    cluster: Cluster, namespace: str, procs: list[subprocess.Popen[str]]
) -> None:
    """Every rank of an attempt is created once: a rank that vanished while nobody watched is not
    recreated alone beside the old ranks (the gang could never rendezvous), the gang restarts."""
    install_crd(cluster)
    apply(cluster, namespace, job_manifest("gap", nodes=NODES))
    first = start_operator(cluster, namespace)
    procs.append(first)
    gang = running_pods(cluster, namespace, "gap", attempt=1, n=NODES)
    wait_phase(cluster, namespace, "gap", "Running")
    first.terminate()
    first.wait(timeout=30)

    victim = gang[1]["metadata"]
    cluster.kubectl("delete", "pod", victim["name"], "-n", namespace, "--wait=true")
    second = start_operator(cluster, namespace)
    procs.append(second)
    running_pods(cluster, namespace, "gap", attempt=2, n=NODES)
    st = wait_phase(cluster, namespace, "gap", "Running")
    assert st["attempt"] == 2
    assert st["restarts"] == {"failures": 0, "interruptions": 1, "total": 1}
    [record] = st["interruptions"]
    assert (record["pod"], record["source"]) == (victim["name"], "pod-deleted")
    # Never a second rank 1 in attempt 1.
    assert all(
        p["metadata"]["uid"] != victim["uid"]
        and p["metadata"]["labels"]["kubetrain.dev/attempt"] == "2"
        for p in pods(cluster, namespace, "gap")
        if p["metadata"]["name"].startswith("gap-") and not p["metadata"].get("deletionTimestamp")
    )
