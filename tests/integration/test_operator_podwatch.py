"""The operator's own pod watch against the local API server: it lists, follows, keeps only
worker pods, and when a stream ends continues from where it was without losing an event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cluster import Cluster
from kubetrain import metrics
from kubetrain.api.constants import LABEL_JOB
from kubetrain.k8s import Kube
from kubetrain.podwatch import PodWatch
from kubetrain.reconcile.podindex import PodIndex

pytestmark = pytest.mark.cluster


def pod(namespace: str, name: str, job: str | None) -> dict[str, Any]:
    """A pod no node takes (pinned to a node that does not exist): it stays Pending, and goes
    at once when deleted."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_JOB: job} if job else {"app": "not-ours"},
        },
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "no-such-node"},
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }


async def until(check: Any, what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_the_pod_watch_lists_follows_and_loses_nothing_across_reopened_streams(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)

    async def kubectl(*args: str, body: dict[str, Any] | None = None) -> None:
        text = json.dumps(body) if body else None
        await asyncio.to_thread(cluster.kubectl, *args, input=text)

    async def scenario() -> None:
        kube = Kube()  # credentials from $KUBECONFIG, as the operator reads them
        index = PodIndex()
        woken: list[tuple[str, str]] = []
        # The API server ends each stream after a second: every change below crosses reopenings.
        watch = PodWatch(kube, index, woken.append, [namespace], server_timeout=1)
        key = (namespace, "j1")
        await kubectl("create", "-f", "-", body=pod(namespace, "j1-a", "j1"))
        await watch.list()
        assert [p.name for p in index.pods(key)] == ["j1-a"]
        assert metrics.WATCHES.state[("pods", namespace)] == "up"
        watch.start()
        try:
            await kubectl("create", "-f", "-", body=pod(namespace, "j1-b", "j1"))
            await kubectl("create", "-f", "-", body=pod(namespace, "other", None))
            await until(lambda: len(index.pods(key)) == 2, "the second pod in the index")
            assert woken.count(key) >= 1
            restarts = metrics.WATCH_RESTARTS.labels("pods")._value.get()

            def reopened() -> float:
                return float(metrics.WATCH_RESTARTS.labels("pods")._value.get())

            for n in range(3):  # each change on a stream opened after the one before
                await kubectl("delete", "pod", "j1-a", "-n", namespace, "--wait=true")
                await until(lambda: [p.name for p in index.pods(key)] == ["j1-b"], "j1-a gone")
                streams = reopened()
                await until(lambda: reopened() > streams, f"the stream reopened ({n})")  # noqa: B023
                await kubectl("create", "-f", "-", body=pod(namespace, "j1-a", "j1"))
                await until(lambda: len(index.pods(key)) == 2, f"j1-a back ({n})")
            assert reopened() >= restarts + 3
            assert len(index) == 2  # the pod without our label never entered
        finally:
            await watch.stop()
            await kube.close()
        assert ("pods", namespace) not in metrics.WATCHES.state

    asyncio.run(scenario())
