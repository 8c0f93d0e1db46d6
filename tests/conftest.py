"""Session fixtures shared by all test layers: moto in server mode and the local control plane."""

from __future__ import annotations

import copy
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from cluster import ROOT, Cluster, cluster_sh, start_cluster
from support import free_port, wait_for


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (HTTP, real boto3 wire protocol) for the whole session.

    It runs in this process so tests can reach `moto.backends` to drive what moto cannot do by
    itself (e.g. move a SageMaker job to Completed). Tests isolate through unique resource names.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every boto3 client created in this test (and its subprocesses) at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert os.environ["AWS_ENDPOINT_URL"] == moto_endpoint
    return moto_endpoint


# --- the local control plane -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real control plane started by hack/cluster.sh for this test session, stopped at the end.

    KUBETRAIN_TEST_CLUSTER=reuse uses the developer's cluster (.cache/cluster/run, as `make demo`
    and `hack/cluster.sh up` leave it) and leaves it running.
    """
    reuse = os.environ.get("KUBETRAIN_TEST_CLUSTER") == "reuse"
    run_dir = ROOT / ".cache" / "cluster" / ("run" if reuse else f"test-{os.getpid()}")
    c = start_cluster(run_dir)
    try:
        yield c
    finally:
        if not reuse:
            cluster_sh("down", run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def native_gang_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second control plane, with native gang scheduling (KUBETRAIN_CLUSTER_GANG=native), for
    the tests of that mode; on its own ports and state directory, stopped at the end."""
    run_dir = ROOT / ".cache" / "cluster" / f"test-gang-{os.getpid()}"
    c = start_cluster(run_dir, gang="native")
    try:
        yield c
    finally:
        cluster_sh("down", run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_mutated_nodes(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").restore_nodes()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (with its default ServiceAccount ready), deleted afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        # Pods now keep their nodes for their grace period (the simulated kubelet honours it):
        # a test's leftovers must not take the next test's capacity.
        cluster.kubectl(
            "delete", "pods", "--all", "-n", name, "--grace-period=0", "--force", check=False
        )
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def spare_nodes(cluster: Cluster) -> list[str]:
    """A third p5 node in each zone, so a gang of 2 still fits in its zone after losing one node
    (the pools have 2 per zone); restore_nodes() removes them after the test."""
    names = []
    for model in ("p5-spot-a0", "p5-spot-b0"):
        node = copy.deepcopy(cluster.node_spec(model))
        name = model[:-1] + "9"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        cluster.add_node(node)
        names.append(name)
    for name in names:
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=60s")
    return names


# --- the operator, in-process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    from operator_harness import install_crd

    install_crd(cluster)


@pytest.fixture
def operator(
    cluster: Cluster, namespace: str, crd: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The production handlers module under kopf's KopfRunner, scoped to the test's namespace.

    Jobs are deleted while the operator still runs, so its finalizer is released.
    """
    from kopf.testing import KopfRunner

    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        try:
            yield runner
        finally:
            cluster.kubectl(
                "delete", "trainingjobs", "--all", "-n", namespace, "--timeout=60s", check=False
            )
    assert runner.exception is None, runner.output[-4000:]
