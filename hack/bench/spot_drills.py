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

Then, with --goodput-seconds > 0, the same job trains for that long under interruptions injected
at Poisson times (--rate-per-min, seeded; the same taint, only while the gang trains, none in the
last GOODPUT_TAIL_S), and its measured goodput (steps gained x the uninterrupted step time, over
the wall time) is compared with the simulator replaying that very trace with the latencies the
drills measured (hack/bench/goodput_sim.py, replay mode). The trace and both numbers go to
hack/bench/results/goodput_real_trace.json, which `goodput_sim.py --replay` reads.

    .venv/bin/python hack/bench/spot_drills.py [--drills 20] [--goodput-seconds 240]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
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

from goodput_sim import replay_trace  # noqa: E402
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
from support import SIM_FSX_POD_TEMPLATE  # noqa: E402

TOY = ROOT / "tests" / "e2e" / "toy_train.py"
TRACE = ROOT / "hack/bench/results/goodput_real_trace.json"
MILESTONES = ("request", "commit", "running", "training")
GOODPUT_TAIL_S = 20.0  # no interruption this close to the end: every recovery ends inside the run
CALIBRATE_S = 10.0  # uninterrupted training that sets the step time
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

    def steps(self, attempt: int) -> int:
        """Steps done as the attempt's rank 0 last recorded (0 before its first)."""
        path = self.workdir / "progress" / f"{self.job}-{attempt}-0"
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def goodput(
        self, attempt: int, seconds: float, rate_per_min: float, seed: int
    ) -> tuple[dict[str, Any], int]:
        """Train for `seconds` under Poisson interruptions; (measurements, the attempt after)."""
        poll(lambda: self.stepped(attempt), 120, f"attempt {attempt} training")
        c0, s0 = time.monotonic(), self.steps(attempt)
        time.sleep(CALIBRATE_S)
        step_s = (time.monotonic() - c0) / max(1, self.steps(attempt) - s0)
        rng = random.Random(seed)
        offsets, at = [], 0.0
        while True:
            at += rng.expovariate(rate_per_min / 60)
            if at >= seconds - GOODPUT_TAIL_S:
                break
            offsets.append(at)
        t0, start_step = time.monotonic(), self.steps(attempt)
        injected: list[dict[str, float]] = []
        for offset in offsets:
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            at = time.monotonic() - t0  # later than drawn when the last recovery ran past it
            if at >= seconds - GOODPUT_TAIL_S:
                break
            taint = time.monotonic()
            self.cluster.taint_node(self.node_of_rank1(attempt), TAINT_NTH_SPOT_ITN, "goodput")
            m = self.milestones
            marks = {
                "request": m.wait("request", attempt, 60) - taint,
                "commit": m.wait("commit", attempt, 120) - taint,
                "running": m.wait("running", attempt + 1, 120) - taint,
            }
            poll(functools.partial(self.stepped, attempt + 1), 120, "next attempt training")
            marks["training"] = time.monotonic() - taint
            injected.append({"at": round(at, 3), **{k: round(v, 3) for k, v in marks.items()}})
            self.cluster.restore_nodes()
            attempt += 1
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        gained = self.steps(attempt) - start_step
        return {
            "seconds": seconds,
            "rate_per_min": rate_per_min,
            "seed": seed,
            "step_s": step_s,
            "steps_gained": gained,
            "measured_goodput": gained * step_s / seconds,
            "injected": injected,
        }, attempt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--drills", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "hack/bench/results/spot_drills.json")
    ap.add_argument("--goodput-seconds", type=float, default=240.0, help="0: no goodput run")
    ap.add_argument("--rate-per-min", type=float, default=1.5, help="goodput run interruptions")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trace-out", type=Path, default=TRACE)
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
    measured: dict[str, Any] | None = None
    try:
        # Baseline: submit to first step of a fresh gang, same cluster, same processes.
        job = job_manifest(
            "drill",
            real_workload=True,  # the stand-in kubelet runs and reports real processes
            nodes=2,
            launcher="none",
            capacity={"type": "spot"},
            checkpoint={"dir": "/fsx/checkpoints/drill"},
            podTemplate=SIM_FSX_POD_TEMPLATE,  # an emptyDir at /fsx stands in for FSx
            failurePolicy={
                "maxRestarts": 0,
                "maxInterruptions": args.drills + 100,  # the goodput run interrupts it too
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
            if args.goodput_seconds > 0:
                measured, _ = drill.goodput(
                    args.drills + 1, args.goodput_seconds, args.rate_per_min, args.seed
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
        "command": " ".join([".venv/bin/python hack/bench/spot_drills.py", *sys.argv[1:]]),
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
    if measured is not None:
        summary["goodput_run"] = compare(measured, results, lost_steps, args)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def sim_inputs(marks: list[dict[str, float]], step_s: float, lost: float) -> dict[str, float]:
    """The simulator's parameters for this cluster and job, latencies the means of `marks`
    (the mean, not the median: goodput is lost in proportion to the expected recovery time)."""
    mean = {k: statistics.fmean(m[k] for m in marks) for k in MILESTONES}
    return {
        "nodes": 2,
        "checkpoint_gb": 0.0,  # the toy's state is a few KB: no save or restore time to model
        "checkpoint_interval_s": 1e9,  # TOY_EVERY: no periodic saves
        "provision_s": 0.0,  # a free node is there at once; the tainted one comes back later
        "notice_to_request_s": round(mean["request"], 3),
        "request_to_commit_overhead_s": round(max(0.0, mean["commit"] - mean["request"]), 3),
        "commit_to_gang_running_s": round(max(0.0, mean["running"] - mean["commit"]), 3),
        "startup_s": round(max(0.0, mean["training"] - mean["running"]), 3),  # to a first step
        "step_s": round(step_s, 5),
        "lost_steps_with_notice": lost,
    }


def compare(
    measured: dict[str, Any],
    drills: list[dict[str, float]],
    lost_steps: list[int | None],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The goodput run against the simulator replaying its trace; writes the trace file."""
    injected = measured["injected"]
    known = [x for x in lost_steps if x is not None]
    lost = sum(known) / len(known) if known else 0.0
    events = [{"at": i["at"], "nodes": 1, "outage": 0.0, "noticed": True} for i in injected]
    doc: dict[str, Any] = {
        "what": "a real run on the local cluster under injected spot notices, and the simulator "
        "replaying the same trace (hack/bench/spot_drills.py)",
        "command": ".venv/bin/python hack/bench/goodput_sim.py --replay "
        + str(args.trace_out.relative_to(ROOT) if args.trace_out.is_relative_to(ROOT) else ""),
        "horizon_s": measured["seconds"],
        "strategy": "kubetrain",
        # Latencies: the drills' of the same session (independent of this run's recoveries).
        "params": sim_inputs(drills or injected, measured["step_s"], lost),
        "interruptions": events,
    }
    simulated = replay_trace(doc)["goodput"]
    own = replay_trace({**doc, "params": sim_inputs(injected, measured["step_s"], lost)})
    result = {
        "seconds": measured["seconds"],
        "rate_per_min": measured["rate_per_min"],
        "seed": measured["seed"],
        "interruptions": len(injected),
        "step_s": round(measured["step_s"], 5),
        "steps_gained": measured["steps_gained"],
        "measured_goodput": round(measured["measured_goodput"], 4),
        "simulated_goodput": round(simulated, 4),
        "difference": round(simulated - measured["measured_goodput"], 4),
        "simulated_with_this_runs_latencies": round(own["goodput"], 4),
        "injected": injected,
    }
    args.trace_out.write_text(json.dumps({**doc, "result": result}, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
