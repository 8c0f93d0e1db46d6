#!/usr/bin/env python3
"""Spot-interruption drills on the local cluster: how fast does a gang checkpoint and come back?

Runs one 2-node TrainingJob (real operator as `python -m kubetrain`, training processes run by the
stand-in kubelet from tests/e2e) and interrupts it DRILLS times by putting the AWS Node
Termination Handler spot taint on the node of rank 1. Per drill it measures, from the taint:

  request   every pod of the gang carries kubetrain.dev/checkpoint-request
  commit    rank 0 reported kubetrain.dev/checkpoint-committed for that request
  running   every pod of the next attempt is Running
  training  the next attempt completed its first training step

Baseline, measured in the same run on the same cluster: a fresh submit of the same job to its
first training step (`cold start`). Results: hack/bench/results/spot_drills.json.

    .venv/bin/python hack/bench/spot_drills.py [--drills 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
for p in ("tests", "tests/e2e", "tests/integration", "operator"):
    sys.path.insert(0, str(ROOT / p))

from local_kubelet import LocalKubelet  # noqa: E402
from operator_harness import apply, install_crd, job_manifest  # noqa: E402

from cluster import Cluster, cluster_sh, start_cluster  # noqa: E402
from kubetrain.api.constants import (  # noqa: E402
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    TAINT_NTH_SPOT_ITN,
)

TOY = ROOT / "tests" / "e2e" / "toy_train.py"
T = TypeVar("T")


def poll(fn: Callable[[], T | None], timeout: float, what: str, every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(what)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Milestones(threading.Thread):
    """Watches the job's pods and records when each milestone was first seen (monotonic time).

    A watch, not list polling: the operator settles a request and deletes the gang within tens
    of milliseconds of the commit, faster than a poll loop can reliably catch the annotation.
    Milestones per attempt: "request" (every pod carries the request), "commit" (rank 0 reported
    an emergency commit), "running" (every pod Running and not being deleted).
    """

    def __init__(self, core: Any, ns: str, job: str, nodes: int = 2) -> None:
        super().__init__(name="milestones", daemon=True)
        self.core, self.ns, self.job, self.nodes = core, ns, job, nodes
        self.seen: dict[tuple[str, int], float] = {}
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self._requested: dict[int, set[int]] = {}
        self._running: dict[int, set[int]] = {}

    def _mark(self, what: str, attempt: int, at: float) -> None:
        with self.cond:
            if (what, attempt) not in self.seen:
                self.seen[(what, attempt)] = at
                self.cond.notify_all()

    def _observe(self, pod: Any, at: float) -> None:
        labels = pod.metadata.labels or {}
        attempt, rank = int(labels.get(LABEL_ATTEMPT, 0)), int(labels.get(LABEL_RANK, -1))
        anns = pod.metadata.annotations or {}
        if ANNOTATION_CHECKPOINT_REQUEST in anns:
            got = self._requested.setdefault(attempt, set())
            got.add(rank)
            if len(got) == self.nodes:
                self._mark("request", attempt, at)
        raw = anns.get(ANNOTATION_CHECKPOINT_COMMITTED)
        if rank == 0 and raw and json.loads(raw).get("kind") == "emergency":
            self._mark("commit", attempt, at)
        up = self._running.setdefault(attempt, set())
        if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
            up.add(rank)
            if len(up) == self.nodes:
                self._mark("running", attempt, at)
        else:
            up.discard(rank)

    def run(self) -> None:
        from kubernetes import watch

        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.ns,
                    label_selector=f"{LABEL_JOB}={self.job}",
                    timeout_seconds=30,
                ):
                    self._observe(event["object"], time.monotonic())
            except Exception as exc:  # a dropped watch: start another (firsts are kept)
                print(f"watch restarted: {exc}", file=sys.stderr)

    def wait(self, what: str, attempt: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (what, attempt) not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} of attempt {attempt}")
                self.cond.wait(left)
            return self.seen[(what, attempt)]


class Drill:
    def __init__(self, cluster: Cluster, ns: str, job: str, workdir: Path) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(cluster.api_client())
        self.cluster, self.ns, self.job, self.workdir = cluster, ns, job, workdir
        self.milestones = Milestones(client.CoreV1Api(cluster.api_client()), ns, job)
        self.milestones.start()

    def node_of_rank1(self, attempt: int) -> str:
        sel = f"{LABEL_JOB}={self.job},{LABEL_ATTEMPT}={attempt},{LABEL_RANK}=1"
        (pod,) = self.core.list_namespaced_pod(self.ns, label_selector=sel).items
        return str(pod.spec.node_name)

    def once(self, attempt: int) -> dict[str, float]:
        self.milestones.wait("running", attempt, 120)
        poll(lambda: self.stepped(attempt), 120, f"attempt {attempt} training")
        victim = self.node_of_rank1(attempt)
        t0 = time.monotonic()
        self.cluster.taint_node(victim, TAINT_NTH_SPOT_ITN, f"drill-{attempt}")
        m = self.milestones
        out = {
            "request": m.wait("request", attempt, 60) - t0,
            "commit": m.wait("commit", attempt, 120) - t0,
            "running": m.wait("running", attempt + 1, 120) - t0,
        }
        poll(lambda: self.stepped(attempt + 1), 120, "next attempt training")
        out["training"] = time.monotonic() - t0
        # The node comes back (a replacement instance in a real cluster).
        self.cluster.restore_nodes()
        return out

    def stepped(self, attempt: int) -> bool:
        """The attempt's rank 0 completed a training step (its progress file exists)."""
        path = self.workdir / "progress" / f"{self.job}-{attempt}-0"
        return path.exists()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--drills", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "hack/bench/results/spot_drills.json")
    args = ap.parse_args()

    run_dir = ROOT / ".cache" / "cluster" / f"bench-{os.getpid()}"
    cluster = start_cluster(run_dir)
    workdir = Path(tempfile.mkdtemp(prefix="kubetrain-drills-"))
    env = cluster.env()
    ns = "drills"
    cluster.kubectl("create", "namespace", ns)
    install_crd(cluster)
    operator = subprocess.Popen(
        [sys.executable, "-m", "kubetrain", "--standalone", "--namespace", ns],
        env=env,
        stdout=(workdir / "operator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    toy_env = {"TOY_STEPS": "1000000", "TOY_STEP_SECONDS": "0.1", "TOY_EVERY": "1000000"}
    results: list[dict[str, float]] = []
    try:
        # Baseline: submit to first step of a fresh gang, same cluster, same processes.
        job = job_manifest(
            "drill",
            real_workload=True,  # the stand-in kubelet runs and reports real processes
            nodes=2,
            launcher="none",
            capacity={"type": "spot"},
            checkpoint={"dir": "/fsx/checkpoints/drill"},
            failurePolicy={
                "maxRestarts": 0,
                "maxInterruptions": args.drills + 5,
                "backoffSeconds": 0,
            },
        )
        drill = Drill(cluster, ns, "drill", workdir)
        with LocalKubelet(cluster, ns, "drill", TOY, workdir, extra_env=toy_env) as kubelet:
            t0 = time.monotonic()
            apply(cluster, ns, job)
            poll(lambda: drill.stepped(1), 120, "first step")
            cold = time.monotonic() - t0
            for attempt in range(1, args.drills + 1):
                results.append(drill.once(attempt))
                print(
                    f"drill {attempt}: "
                    + ", ".join(f"{k} {v:.2f}s" for k, v in results[-1].items()),
                    flush=True,
                )
            if kubelet.errors:
                raise RuntimeError(kubelet.errors)
            timeline = cluster.get("trainingjob", "drill", "-n", ns)["status"]["interruptions"]
            lost_steps = [e.get("lostSteps") for e in timeline]
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        cluster_sh("down", run_dir)

    summary: dict[str, Any] = {
        "drills": len(results),
        "baseline_cold_start_to_first_step_s": round(cold, 3),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "command": ".venv/bin/python hack/bench/spot_drills.py --drills 20",
        "notice": f"taint {TAINT_NTH_SPOT_ITN} on rank 1's node; times from the taint",
        "lost_steps_per_drill": lost_steps,
    }
    for key in ("request", "commit", "running", "training"):
        values = [r[key] for r in results]
        summary[f"notice_to_{key}"] = {
            "p50_s": round(statistics.median(values), 3),
            "p95_s": round(pct(values, 0.95), 3),
            "max_s": round(max(values), 3),
            "p50_vs_cold_start": round(statistics.median(values) / cold, 3),
        }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
