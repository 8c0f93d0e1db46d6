"""The checkpoint agent against the real API server: a local process stands in for the container.

Pods on kwok nodes never run anything, so the training process runs here with the pod's identity
(KUBETRAIN_POD_NAME/NAMESPACE) and KUBECONFIG, exactly as `Checkpointer.from_env()` sees it in a pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    EXIT_CHECKPOINTED_AND_STOPPED,
)
from kubetrain.runtime import PosixTier, discover
from support import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]

TRAINER = textwrap.dedent(
    """
    import logging, sys, time
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    from kubetrain.runtime import Checkpointer
    ckpt = Checkpointer.from_env(every_steps=5)
    state = {"step": 0}
    for step in range(ckpt.restore(state), 100000):
        state["step"] = step + 1
        time.sleep(0.02)   # simulated compute
        ckpt.step(step + 1, state)
    """
)


def committed(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    annotations = cluster.get("pod", name, "-n", ns)["metadata"].get("annotations") or {}
    raw = annotations.get(ANNOTATION_CHECKPOINT_COMMITTED)
    return json.loads(raw) if raw else None


def test_request_annotation_stops_saves_and_reports(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    pod = "toy-1-0"
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "train:1"}]},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    ckpt_dir = tmp_path / "ckpt"
    env = {
        **cluster.env(),
        "PYTHONPATH": str(ROOT / "operator"),
        "KUBETRAIN_CHECKPOINT_DIR": str(ckpt_dir),
        "KUBETRAIN_JOB": "toy",
        "KUBETRAIN_ATTEMPT": "1",
        "KUBETRAIN_POD_NAME": pod,
        "KUBETRAIN_POD_NAMESPACE": namespace,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAINER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Periodic commits are reported too, so status.checkpoint can follow the newest one.
        periodic = wait_for(
            lambda: (c := committed(cluster, namespace, pod)) and c["kind"] == "periodic" and c,
            timeout=60,
            what="a periodic commit reported on the pod",
        )
        assert periodic["step"] % 5 == 0 and Path(periodic["manifest"]).is_file()

        request = {
            "id": "req-7",
            "reason": "spot-interruption",
            "deadline": "2030-01-01T00:00:00Z",
        }
        cluster.kubectl(
            "annotate", "pod", pod, "-n", namespace,
            f"{ANNOTATION_CHECKPOINT_REQUEST}={json.dumps(request)}",
        )  # fmt: skip
        code = proc.wait(timeout=60)
        out = proc.stdout.read() if proc.stdout else ""
        assert code == EXIT_CHECKPOINTED_AND_STOPPED, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    report = committed(cluster, namespace, pod)
    assert report is not None, out
    newest = discover(PosixTier(ckpt_dir))
    assert newest is not None
    assert report == {
        "id": "req-7",
        "step": newest.step,
        "manifest": str(ckpt_dir / newest.path),
        "kind": "emergency",
    }
    assert newest.kind == "emergency" and newest.step >= periodic["step"]
    assert "checkpoint request req-7" in out
