"""Spot drill helpers shared by the e2e drills (test_spot_*.py): the 2-node spot job, the reference
run outside Kubernetes, and waits on attempts, progress and the end of the job.

Not a test module (no test_ prefix).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from local_kubelet import LocalKubelet

# The operator test helpers live next to the integration tests; importable however pytest is run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from operator_harness import job_manifest, pods, status

from cluster import Cluster
from support import SIM_FSX_POD_TEMPLATE, free_port, wait_for

HERE = Path(__file__).parent
TOY = HERE / "toy_train.py"


def drill_job(name: str, **extra: Any) -> dict[str, Any]:
    """2 ranks on p5 spot, real processes (the stand-in kubelet reports their exits); `extra`
    spec fields win over these."""
    spec: dict[str, Any] = {
        "nodes": 2,
        "launcher": "none",
        "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
        "capacity": {"type": "spot"},
        "checkpoint": {"dir": f"/fsx/checkpoints/{name}", "keep": 3},
        "failurePolicy": {"maxRestarts": 0, "maxInterruptions": 3, "backoffSeconds": 0},
        "podTemplate": copy.deepcopy(SIM_FSX_POD_TEMPLATE),  # checkpoint.dir on a mounted volume
    }
    return job_manifest(name, real_workload=True, **{**spec, **extra})


def reference(workdir: Path, env: dict[str, str]) -> str:
    """Parameters of the same 2-rank training, never interrupted, outside Kubernetes."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        penv = dict(
            os.environ,
            NODE_RANK=str(rank),
            NNODES="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            KUBETRAIN_CHECKPOINT_DIR=str(workdir / "ckpt"),
            KUBETRAIN_POD_NAME=f"ref-{rank}",
            **{**env, "TOY_STEP_SECONDS": "0"},
        )
        penv.pop("KUBETRAIN_POD_NAMESPACE", None)  # no pod to watch: no agent
        procs.append(subprocess.Popen([sys.executable, str(TOY)], env=penv, cwd=workdir))
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    return str(json.loads((workdir / "results" / "ref-0.json").read_text())["params"])


def progress(workdir: Path, pod: str) -> int:
    """The last step the pod's process completed (0 before the first)."""
    path = workdir / "progress" / pod
    return int(path.read_text() or 0) if path.exists() else 0


def running_attempt(
    cluster: Cluster, ns: str, job: str, attempt: int, timeout: float = 90
) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        items = pods(cluster, ns, job, attempt=attempt)
        ok = len(items) == 2 and all(p["status"].get("phase") == "Running" for p in items)
        return items if ok else None

    return wait_for(ready, timeout=timeout, what=f"attempt {attempt} running")


def env_of(pod: dict[str, Any], name: str) -> str | None:
    for var in pod["spec"]["containers"][0].get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def finish(cluster: Cluster, ns: str, job: str, kubelet: LocalKubelet, pod: str) -> dict[str, Any]:
    """Wait for the job to end; it must have Succeeded (else show `pod`'s log)."""
    st = wait_for(
        lambda: (s := status(cluster, ns, job)).get("phase") in ("Succeeded", "Failed") and s,
        timeout=180,
        what=f"{job} finished",
    )
    assert st["phase"] == "Succeeded", (st, kubelet.log_of(pod)[-3000:])
    assert not kubelet.errors, kubelet.errors
    return st
