#!/usr/bin/env python3
"""Speed at scale: kubetrain against a bare client (the API server's own limit), JobSet and the
Training Operator, on one local control plane, in interleaved rounds (issue 14).

Each round gets a fresh namespace and a fresh controller process, submits N jobs x P pods at once
and measures from a pod watch started before the first submission:

  first     submit -> the job's first pod exists
  gang      submit -> the job's P-th pod exists (the whole gang created)
  running   submit -> all P pods Running
  all       first submit -> all N x P pods exist / Running (the round's makespan)
  restart   one rank of R running jobs fails at once -> the new gang exists / is Running
            (Training Operator: it replaces only the failed pod; that pod is what is timed)
  notice    kubetrain only: the spot-interruption taint on 10 nodes at once, each the node of
            one running gang, with the others running -> every pod of the gang has the
            checkpoint request

with the controller's CPU seconds and RSS (psutil) and each control-plane process's CPU seconds,
and kubetrain's own reconcile passes and API requests per job until all pods run (its /metrics).

Systems (one round each, order rotated per repetition):

  kubetrain          `python -m kubetrain --standalone` from this tree
  bare               no controller: this script creates exactly the objects a kubetrain attempt
                     needs (ServiceAccount, Role, RoleBinding, Service, P pods; built by
                     kubetrain.build), async, C requests in flight; C swept, the best is the limit.
                     Its restart: delete the P pods, wait until they are gone, create P new ones.
  bare-job           the bare client doing the least any controller of a TrainingJob with a status
                     does: it creates the TrainingJob (no operator runs), then the same objects as
                     bare, then writes the job's status once. Its ratio to bare is the floor for
                     kubetrain's (the job's create and a status write cost the API server about
                     as much as 4 pods' creates: hack/bench/write_cost.py).
  jobset             JobSet v0.12.0 (hack/tools/bench-pins.tsv), shipped defaults: pods come from the
                     kube-controller-manager's Job controller (client QPS 20, 5 Job workers)
  jobset-tuned       the same with the kube-controller-manager at --kube-api-qps=500
                     --kube-api-burst=500 --concurrent-job-syncs=50
  pytorch            Training Operator v1.9.2 PyTorchJob, shipped defaults (QPS 20, burst 30,
                     1 worker)
  pytorch-tuned      --kube-api-qps=500 --kube-api-burst=500 --controller-threads=8

    make bench-scale                                   # N = 10, 100, 1000; every system
    .venv/bin/python hack/bench/scale.py --jobs 10,100 --systems kubetrain,bare --reps 1

Results: hack/bench/results/bench_scale.json (see --out). A benchmark, not a test: nothing here
asserts a number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
for _p in ("tests", "operator"):
    sys.path.insert(0, str(ROOT / _p))

from cluster import Cluster, cluster_sh, start_cluster  # noqa: E402
from kubetrain.api.constants import (  # noqa: E402
    ANNOTATION_CHECKPOINT_REQUEST,
    GROUP,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_RANK,
    TAINT_NTH_SPOT_ITN,
    VERSION,
)
from kubetrain.api.models import TrainingJobSpec  # noqa: E402
from kubetrain.build import JobRef, Placement, build_attempt, resolve  # noqa: E402

SYSTEMS = (
    "kubetrain",
    "kubetrain-baseline",
    "bare",
    "bare-job",
    "jobset",
    "jobset-tuned",
    "pytorch",
    "pytorch-tuned",
)
ZONE = "us-west-2a"
SIGTERM_EXITS = {"sim.test/sigterm-exit-code": "143"}  # the simulated workload exits on SIGTERM
IMAGE = "registry.example/train:1"
BENCH_NODE = "bench.kubetrain.dev/node"
NOTICE_TAINT = "bench.kubetrain.dev/notice"
SWEEP_GATE = "bench.kubetrain.dev/sweep"  # the concurrency sweep's pods are never scheduled
PODS_PER_PLAIN_NODE = 500
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
JOBSET_RESTART = "jobset.sigs.k8s.io/restart-attempt"
JOB_INDEX = "batch.kubernetes.io/job-completion-index"
PYTORCH_NAME = "training.kubeflow.org/job-name"
PYTORCH_TYPE = "training.kubeflow.org/replica-type"
PYTORCH_INDEX = "training.kubeflow.org/replica-index"
KCM_TUNED = ["--kube-api-qps=500", "--kube-api-burst=500", "--concurrent-job-syncs=50"]
PYTORCH_TUNED = ["--kube-api-qps=500", "--kube-api-burst=500", "--controller-threads=8"]


def log(msg: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))], 3)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": round(max(values), 3) if values else None,
        "mean": round(statistics.fmean(values), 3) if values else None,
    }


# --- the API, async ---------------------------------------------------------------------------


class Api:
    """A small aiohttp client for the local cluster (token auth from the kubeconfig)."""

    def __init__(self, kubeconfig: str, limit: int = 512) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        self.server = cfg["clusters"][0]["cluster"]["server"]
        self.token = cfg["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(
            cafile=cfg["clusters"][0]["cluster"]["certificate-authority"]
        )
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=limit),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
        )
        self.timeout = aiohttp.ClientTimeout(total=60)

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok: Iterable[int] = (),
    ) -> Any:
        for attempt in range(20):
            async with self.session.request(
                method,
                self.server + path,
                params=params,
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type},
                timeout=self.timeout,
            ) as resp:
                if resp.status == 429 or (resp.status >= 500 and attempt < 19):
                    await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                data = await resp.read()
                if resp.status >= 300 and resp.status not in ok:
                    raise RuntimeError(f"{method} {path}: {resp.status} {data[:400]!r}")
                return json.loads(data) if data else None
        raise RuntimeError(f"{method} {path}: still throttled")

    async def watch(
        self,
        path: str,
        on_event: Callable[[str, dict[str, Any], float], None],
        ready: asyncio.Event,
    ) -> None:
        """List then watch `path` forever, calling on_event(type, object, monotonic time)."""
        listing = await self.call("GET", path)
        now = time.monotonic()
        for item in listing.get("items") or []:
            on_event("ADDED", item, now)
        rv = listing["metadata"]["resourceVersion"]
        ready.set()
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            params["timeoutSeconds"] = "3600"
            async with self.session.get(self.server + path, params=params) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"watch {path}: {resp.status} {await resp.text()}")
                async for line in resp.content:
                    now = time.monotonic()
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch {path}: {obj}")
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj, now)


# --- processes ----------------------------------------------------------------------------------


def control_plane(run_dir: Path) -> dict[str, psutil.Process]:
    """The cluster's component processes (etcd, kube-apiserver, ...) by name."""
    out: dict[str, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and str(run_dir) in " ".join(cmd):
            name = Path(cmd[0]).name
            if name in (
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok",
            ):
                out[name] = proc
    return out


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


async def quiesce(
    procs: dict[str, psutil.Process], idle: float = 0.15, limit: float = 180.0
) -> float:
    """Wait until the control plane has caught up with earlier rounds (the namespace controller,
    the garbage collector and kwok work on a round's thousands of pods for a while after the
    round): a second in which its processes together use less than `idle` of a core (idle, the
    local control plane uses 0.01-0.09). Returns the seconds waited, recorded with the round."""
    start = time.monotonic()
    before = sum(cpu_seconds(p) for p in procs.values())
    while time.monotonic() - start < limit:
        await asyncio.sleep(1.0)
        now = sum(cpu_seconds(p) for p in procs.values())
        if now - before < idle:
            break
        before = now
    return round(time.monotonic() - start, 1)


MACHINE = "(machine)"  # CpuSampler's key for every process's CPU time, listed or not


class CpuSampler:
    """CPU seconds of a set of processes sampled every `every` seconds from a thread of its own
    (the benchmark's event loop is busy exactly when it matters): what each process spent in a
    window, and how busy the machine's cores were. The benchmark's own process is sampled too,
    as "benchmark" (the bare client's creates, every round's pod watch)."""

    def __init__(self, procs: dict[str, psutil.Process], every: float = 0.05) -> None:
        self.procs = {**procs, "benchmark": psutil.Process()}
        self.every = every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            cpu = {k: cpu_seconds(p) for k, p in self.procs.items()}
            machine = psutil.cpu_times()
            cpu[MACHINE] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
            self.samples.append((time.monotonic(), cpu))
            if self._stop.wait(self.every):
                return

    def _at(self, t: float) -> dict[str, float]:
        return min(self.samples, key=lambda s: abs(s[0] - t))[1]

    def window(self, start: float, end: float) -> dict[str, Any]:
        """{"cpu_s": {process: seconds}, "busy": share of the machine's cores in use, anyone's}."""
        a, b = self._at(start), self._at(end)
        cpu = {k: round(b[k] - a[k], 2) for k in b if k != MACHINE}
        cores = psutil.cpu_count() or 1
        busy = (b[MACHINE] - a[MACHINE]) / max(end - start, 1e-9) / cores
        return {"cpu_s": cpu, "busy": round(busy, 2)}


def restart_kcm(run_dir: Path, extra: list[str]) -> None:
    """Restart the kube-controller-manager with `extra` flags (none: the cluster's own)."""
    procs = control_plane(run_dir)
    kcm = procs["kube-controller-manager"]
    cmd = [
        a for a in kcm.cmdline() if not any(a.startswith(e.split("=")[0] + "=") for e in KCM_TUNED)
    ]
    kcm.terminate()
    kcm.wait(30)
    logf = open(run_dir / "logs" / "kube-controller-manager.log", "ab")  # noqa: SIM115
    subprocess.Popen(cmd + extra, stdout=logf, stderr=logf, start_new_session=True)
    deadline = time.monotonic() + 60
    port = next(a for a in cmd if a.startswith("--secure-port=")).split("=")[1]
    while time.monotonic() < deadline:
        if (
            subprocess.run(
                ["curl", "-kfsS", f"https://127.0.0.1:{port}/healthz"],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the kube-controller-manager did not come back")


@dataclass
class Controller:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    logfile: Path | None = None
    metrics_url: str | None = None  # kubetrain: its /metrics

    def counters(self) -> tuple[dict[str, float], dict[str, float]]:
        """kubetrain's own counts from its /metrics: ({"passes", "api_requests"}, requests by
        "VERB resource")."""
        if self.metrics_url is None:
            return {}, {}
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        names = {
            "kubetrain_reconcile_duration_seconds_count": "passes",
            "kubetrain_api_requests_total": "api_requests",
        }
        out: dict[str, float] = {}  # only what this operator exports (an older one: fewer)
        by_request: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in names:
                    out[names[sample.name]] = out.get(names[sample.name], 0.0) + sample.value
                if sample.name == "kubetrain_api_requests_total":  # "POST pods", ...
                    what = f"{sample.labels['verb']} {sample.labels['resource']}"
                    by_request[what] = by_request.get(what, 0.0) + sample.value
        return out, by_request

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.ps is not None and self.ps.pid != self.proc.pid:  # under py-spy: it writes at exit
            with contextlib.suppress(psutil.Error):
                self.ps.terminate()
                self.ps.wait(20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(120)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu(self) -> float:
        return cpu_seconds(self.ps) if self.ps else 0.0

    def rss_mib(self) -> float:
        try:
            return round(self.ps.memory_info().rss / 2**20, 1) if self.ps else 0.0
        except psutil.Error:
            return 0.0


# --- workloads ------------------------------------------------------------------------------------


def kubetrain_job(name: str, pods: int, notice: int | None) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": dict(SIGTERM_EXITS)}}
    spec: dict[str, Any] = {
        "image": IMAGE,
        "command": ["python", "train.py"],
        "nodes": pods,
        "resources": {"cpu": "100m", "memory": "128Mi"},
        # The peers restart at once: so does kubetrain here (its default waits 30 s first).
        "failurePolicy": {"maxRestarts": 3, "backoffSeconds": 0},
        "podTemplate": template,
    }
    if notice is not None:
        template["spec"] = {
            "nodeSelector": {BENCH_NODE: f"notice-{notice}"},
            "tolerations": [{"key": NOTICE_TAINT, "operator": "Exists"}],
            "volumes": [{"name": "ckpt", "emptyDir": {}}],
            "containers": [
                {"name": "worker", "volumeMounts": [{"name": "ckpt", "mountPath": "/ckpt"}]}
            ],
        }
        spec["checkpoint"] = {"dir": "/ckpt"}
    return {
        "apiVersion": "kubetrain.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def bare_objects(namespace: str, name: str, pods: int, attempt: int) -> list[dict[str, Any]]:
    """What a kubetrain attempt creates, built by kubetrain's own builders (no owner: no job)."""
    spec = TrainingJobSpec.model_validate(kubetrain_job(name, pods, None)["spec"])
    objs = build_attempt(
        JobRef(name=name, namespace=namespace, uid="00000000-0000-0000-0000-000000000000"),
        resolve(spec),
        attempt,
        placement=Placement(zone=ZONE),
    )
    for obj in objs:
        obj["metadata"].pop("ownerReferences", None)
    return objs


def bare_status(attempt: int, pods: int) -> dict[str, Any]:
    """The status a controller writes once it has created an attempt (bare-job's one write)."""
    return {
        "status": {
            "phase": "Pending",
            "attempt": attempt,
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Pending",
                    "message": f"attempt {attempt}: created {pods} pods",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }


def _container(name: str) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": ["python", "train.py"]}


def jobset(name: str, pods: int) -> dict[str, Any]:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": {"maxRestarts": 3},
            "successPolicy": {"operator": "All"},
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "replicatedJobs": [
                {
                    "name": "w",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": pods,
                            "completions": pods,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,
                            "template": {
                                "metadata": {"annotations": dict(SIGTERM_EXITS)},
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [_container("train")],
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def pytorchjob(name: str, pods: int) -> dict[str, Any]:
    def replicas(n: int) -> dict[str, Any]:
        return {
            "replicas": n,
            "restartPolicy": "ExitCode",
            "template": {
                "metadata": {"annotations": dict(SIGTERM_EXITS)},
                "spec": {"containers": [_container("pytorch")]},
            },
        }

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "runPolicy": {"backoffLimit": 10},
            "pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(pods - 1)},
        },
    }


def pod_key(system: str, pod: dict[str, Any]) -> tuple[str, str, int] | None:
    """(job, generation, rank) of a pod, or None when it is not a benchmark pod."""
    labels = pod["metadata"].get("labels") or {}
    if system.startswith(("kubetrain", "bare")):
        if LABEL_JOB not in labels:
            return None
        return labels[LABEL_JOB], labels.get(LABEL_ATTEMPT, ""), int(labels.get(LABEL_RANK, 0))
    if system.startswith("jobset"):
        if JOBSET_NAME not in labels:
            return None
        return labels[JOBSET_NAME], labels.get(JOBSET_RESTART, ""), int(labels.get(JOB_INDEX, 0))
    if PYTORCH_NAME not in labels:
        return None
    rank = int(labels.get(PYTORCH_INDEX, 0)) + (1 if labels.get(PYTORCH_TYPE) == "worker" else 0)
    return labels[PYTORCH_NAME], "", rank


@dataclass
class PodSeen:
    uid: str
    name: str
    job: str
    rank: int
    created: float
    running: float | None = None
    deleted: float | None = None
    requested: float | None = None
    failed: float | None = None


@dataclass
class Tracker:
    """Every pod of a round as the watch saw it (times: this process's monotonic clock)."""

    system: str
    pods: dict[str, PodSeen] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)  # uids of pods that exist now
    waiters: set[asyncio.Event] = field(default_factory=set)

    def on_pod(self, type_: str, pod: dict[str, Any], now: float) -> None:
        key = pod_key(self.system, pod)
        if key is None:
            return
        meta = pod["metadata"]
        seen = self.pods.get(meta["uid"])
        if seen is None:
            seen = PodSeen(meta["uid"], meta["name"], key[0], key[2], now)
            self.pods[meta["uid"]] = seen
        phase = (pod.get("status") or {}).get("phase")
        if seen.running is None and phase == "Running":
            seen.running = now
        if seen.failed is None and phase == "Failed":
            seen.failed = now
        annotations = meta.get("annotations") or {}
        if seen.requested is None and ANNOTATION_CHECKPOINT_REQUEST in annotations:
            seen.requested = now
        if seen.deleted is None and (type_ == "DELETED" or meta.get("deletionTimestamp")):
            seen.deleted = now
        if type_ == "DELETED":
            self.live.discard(seen.uid)
        else:
            self.live.add(seen.uid)
        for waiter in self.waiters:
            waiter.set()

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        changed = asyncio.Event()
        self.waiters.add(changed)
        try:
            while True:
                changed.clear()
                if done():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    log(f"timed out after {timeout:.0f}s waiting for {what}")
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, 1.0))
        finally:
            self.waiters.discard(changed)

    def by_job(self, exclude: set[str] = frozenset()) -> dict[str, list[PodSeen]]:  # type: ignore[assignment]
        out: dict[str, list[PodSeen]] = {}
        for p in self.pods.values():
            if p.uid not in exclude:
                out.setdefault(p.job, []).append(p)
        return out


# --- the bench --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = ROOT / ".cache" / "cluster" / f"bench-scale-{os.getpid()}"
        self.cluster: Cluster | None = None
        self.api: Api | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        self.tools = Path(
            subprocess.check_output([str(ROOT / "hack" / "tools.sh"), "--print"], text=True).strip()
        )
        self.bare_best: int | None = None
        self.bare_sweep: dict[int, float] = {}

    # ----- setup
    def start(self) -> None:
        log(f"starting the local control plane in {self.run_dir.relative_to(ROOT)}")
        self.cluster = start_cluster(self.run_dir)
        self.kubectl = self.cluster.kubectl
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(ROOT / "crds" / "trainingjob.yaml"),
        )
        wants = set(self.args.systems)
        if wants & {"jobset", "jobset-tuned"}:
            self._install_peer("jobset", "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml")
        if wants & {"pytorch", "pytorch-tuned"}:
            self._install_peer(
                "training-operator", "manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
            )
            self.kubectl("create", "namespace", "kubeflow")
            self.kubectl(
                "create", "secret", "generic", "training-operator-webhook-cert", "-n", "kubeflow"
            )
            webhook = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "validator.training-operator.kubeflow.org"},
                "webhooks": [],
            }
            self.kubectl("apply", "-f", "-", input=json.dumps(webhook))
        for attempt in range(10):  # a CRD just created has no conditions yet: kubectl wait errs
            try:
                self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
                break
            except RuntimeError:
                if attempt == 9:
                    raise
                time.sleep(1.0)
        self._cert()

    def _install_peer(self, tool: str, crd: str) -> None:
        subprocess.run([str(ROOT / "hack" / "tools.sh"), tool], check=True)
        module = subprocess.check_output(
            [str(ROOT / "hack" / "tools.sh"), "--module", tool], text=True
        ).strip()
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(Path(module) / crd))

    def _cert(self) -> None:
        """A self-signed serving cert: the peers' webhook servers need one to start (no webhook
        is registered with the API server, as when their webhooks are not installed)."""
        self.certs = self.tmp / "certs"
        self.certs.mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-keyout", str(self.certs / "tls.key"),
             "-out", str(self.certs / "tls.crt")],
            check=True, capture_output=True,
        )  # fmt: skip

    async def add_nodes(
        self, count: int, *, prefix: str, pods: int, notice: bool = False
    ) -> list[str]:
        """Plain kwok nodes (no taints, no accelerators) so capacity is never the limit."""
        assert self.api
        names = []
        for i in range(count):
            name = f"{prefix}-{i}"
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": ZONE,
                        "topology.kubernetes.io/region": "us-west-2",
                        "node.kubernetes.io/instance-type": "bench.plain",
                        BENCH_NODE: name,
                    },
                },
                "spec": {"taints": [{"key": NOTICE_TAINT, "value": "x", "effect": "NoSchedule"}]}
                if notice
                else {},
            }
            await self.api.call("POST", "/api/v1/nodes", node, ok=(409,))
            res = {"cpu": "4000", "memory": "16Ti", "pods": str(pods), "ephemeral-storage": "100Ti"}
            await self.api.call(
                "PATCH",
                f"/api/v1/nodes/{name}/status",
                {"status": {"capacity": res, "allocatable": res}},
                content_type="application/merge-patch+json",
            )
            names.append(name)
        self.kubectl(
            "wait", "--for=condition=Ready", *[f"node/{n}" for n in names], "--timeout=120s"
        )
        return names

    # ----- controllers
    def start_controller(self, system: str, ns: str) -> Controller:
        assert self.cluster
        env = self.cluster.env()
        logfile = self.tmp / f"{ns}.log"
        if system.startswith("bare"):
            return Controller(system)
        metrics_port = 0
        if system.startswith("kubetrain"):
            src = Path(self.args.baseline) if system == "kubetrain-baseline" else ROOT
            env["PYTHONPATH"] = f"{src / 'operator'}:{src / 'components'}"
            metrics_port = free_port()  # its passes and requests (Controller.counters)
            cmd = [
                sys.executable,
                "-m",
                "kubetrain",
                "--standalone",
                f"--metrics-address=127.0.0.1:{metrics_port}",
            ]
            if self.args.profile:
                out = Path(self.args.profile) / f"profile-{ns}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                spy = str(Path(sys.executable).parent / "py-spy")
                cmd = [spy, "record", "--format", "raw", "-r", "50", "-o", str(out), "--", *cmd]
        elif system.startswith("jobset"):
            cfg = {
                "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
                "kind": "Configuration",
                "internalCertManagement": {"enable": False},
                "webhook": {"port": free_port(), "certDir": str(self.certs)},
                "metrics": {"bindAddress": "0"},
                "health": {"healthProbeBindAddress": "0"},
                "leaderElection": {"leaderElect": False},
            }
            cfgfile = self.tmp / "jobset-config.yaml"
            cfgfile.write_text(yaml.safe_dump(cfg))
            cmd = [
                str(self.tools / "jobset"),
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--config={cfgfile}",
            ]
        else:
            certdir = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in the operator's code
            if not (certdir / "tls.crt").exists():
                certdir.mkdir(parents=True, exist_ok=True)
                for f in ("tls.crt", "tls.key"):
                    shutil.copy(self.certs / f, certdir / f)
            env["MY_POD_NAMESPACE"] = "kubeflow"
            cmd = [
                str(self.tools / "training-operator"),
                f"--kubeconfig={self.cluster.kubeconfig}",
                "--enable-scheme=pytorchjob",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
                f"--webhook-server-port={free_port()}",
            ]
            if system == "pytorch-tuned":
                cmd += PYTORCH_TUNED
        out = open(logfile, "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)
        ps = psutil.Process(proc.pid)
        if self.args.profile and system.startswith("kubetrain"):
            time.sleep(1.0)
            children = ps.children()
            ps = children[0] if children else ps
        url = f"http://127.0.0.1:{metrics_port}/metrics" if system.startswith("kubetrain") else None
        return Controller(system, proc, ps, logfile, url)

    # ----- one round
    async def round(self, system: str, n: int, rep: int) -> dict[str, Any]:
        assert self.api and self.cluster
        pods = self.args.pods
        ns = f"b-{system}-{n}-{rep}-{os.getpid() % 10000}"
        await self.api.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
        await self._default_sa(ns)
        if system == "jobset-tuned":
            restart_kcm(self.run_dir, KCM_TUNED)
        tracker = Tracker(system)
        ready = asyncio.Event()
        watch = asyncio.create_task(
            self.api.watch(f"/api/v1/namespaces/{ns}/pods", tracker.on_pod, ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        cp = control_plane(self.run_dir)
        ctl = self.start_controller(system, ns)
        await asyncio.sleep(self.args.settle)  # the controller's watches are up
        quiet_after = await quiesce(cp)
        cpu0 = {k: cpu_seconds(p) for k, p in cp.items()}
        ctl_cpu0 = ctl.cpu()
        rss0 = ctl.rss_mib()
        names = [f"j{i:04d}" for i in range(n)]
        notice_jobs = (
            names[: self.args.notices]
            if system.startswith("kubetrain") and n >= 2 * self.args.notices
            else []
        )
        result: dict[str, Any] = {"system": system, "jobs": n, "pods_per_job": pods, "rep": rep}
        result["control_plane_quiet_after_s"] = quiet_after
        sampled = {**cp, **({"controller": ctl.ps} if ctl.ps else {})}
        sampler = CpuSampler(sampled)
        sampler.start()
        try:
            submitted = await self.submit(system, ns, names, notice_jobs, result)
            t_first = min(submitted.values())
            expected = n * pods
            ok = await tracker.until(
                lambda: sum(1 for p in tracker.pods.values() if p.running) >= expected,
                self.args.timeout,
                f"{system}: {expected} pods Running",
            )
            result["complete"] = ok
            firsts, gangs, runs = [], [], []
            per_job = tracker.by_job()
            for job, t0 in submitted.items():
                ps = sorted(per_job.get(job, []), key=lambda p: p.created)
                if ps:
                    firsts.append(ps[0].created - t0)
                if len(ps) >= pods:
                    gangs.append(ps[pods - 1].created - t0)
                    r = [p.running for p in ps[:pods]]
                    if all(r):
                        runs.append(max(r) - t0)  # type: ignore[type-var]
            result["submit_to_first_pod"] = summary(firsts)
            result["submit_to_gang_created"] = summary(gangs)
            result["submit_to_gang_running"] = summary(runs)
            created = sorted(p.created for p in tracker.pods.values())
            running = sorted(p.running for p in tracker.pods.values() if p.running)
            if len(created) >= expected:
                result["all_pods_created_s"] = round(created[expected - 1] - t_first, 3)
                # Where the machine's cores went while the gangs were being created.
                result["create_window"] = sampler.window(t_first, created[expected - 1])
            if len(running) >= expected:
                result["all_pods_running_s"] = round(running[expected - 1] - t_first, 3)
            result["controller_cpu_s_create"] = round(ctl.cpu() - ctl_cpu0, 2)
            with contextlib.suppress(OSError, ValueError):
                totals, by_request = ctl.counters()
                for counter, value in totals.items():
                    result[f"{counter}_per_job_create"] = round(value / n, 1)
                result["api_requests_per_job_create_by_request"] = {
                    what: round(value / n, 2) for what, value in by_request.items()
                }
            result["controller_rss_mib"] = ctl.rss_mib()
            result["controller_rss_mib_before"] = rss0
            if ok and self.args.restarts:
                await self.restart(system, ns, tracker, names, notice_jobs, result)
            if ok and notice_jobs:
                # "With 100 jobs running": after the restart storm the operator may still be
                # working through its events; --notice-settle 0 measures the notice in the storm.
                await asyncio.sleep(self.args.notice_settle)
                result["notice_after_settle_s"] = self.args.notice_settle
                await self.notice(ns, tracker, notice_jobs, result)
            result["controller_cpu_s"] = round(ctl.cpu() - ctl_cpu0, 2)
            result["controller_rss_mib_end"] = ctl.rss_mib()
            result["control_plane_cpu_s"] = {
                k: round(cpu_seconds(p) - cpu0[k], 2) for k, p in cp.items()
            }
        finally:
            sampler.stop()
            watch.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(watch, 10)
            log(f"cleaning up {ns}")
            await self.cleanup(system, ns, ctl)
            if system == "jobset-tuned":
                restart_kcm(self.run_dir, [])
        return result

    async def _default_sa(self, ns: str) -> None:
        assert self.api
        for _ in range(300):
            got = await self.api.call(
                "GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default", ok=(404,)
            )
            if got.get("kind") != "Status":  # not the 404's Status: the account exists
                return
            await asyncio.sleep(0.1)

    async def submit(
        self, system: str, ns: str, names: list[str], notice_jobs: list[str], result: dict[str, Any]
    ) -> dict[str, float]:
        """Create every job at once; returns job -> monotonic time its first request went out."""
        assert self.api
        api = self.api
        submitted: dict[str, float] = {}
        if system.startswith("bare"):
            result["bare_concurrency"] = self.bare_best
            result["bare_concurrency_sweep_s"] = self.bare_sweep
            t0 = time.monotonic()
            submitted = await self._bare_create(
                ns, names, 1, self.bare_best or 64, job=system == "bare-job"
            )
            result["submit_requests_s"] = round(time.monotonic() - t0, 3)
            return submitted
        sem = asyncio.Semaphore(64)

        async def one(name: str) -> None:
            if system.startswith("kubetrain"):
                idx = notice_jobs.index(name) if name in notice_jobs else None
                body = kubetrain_job(name, self.args.pods, idx)
                path = f"/apis/kubetrain.dev/v1alpha1/namespaces/{ns}/trainingjobs"
            elif system.startswith("jobset"):
                body = jobset(name, self.args.pods)
                path = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{ns}/jobsets"
            else:
                body = pytorchjob(name, self.args.pods)
                path = f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs"
            async with sem:
                submitted[name] = time.monotonic()
                await api.call("POST", path, body)

        t0 = time.monotonic()
        await asyncio.gather(*(one(n) for n in names))
        result["submit_requests_s"] = round(time.monotonic() - t0, 3)
        return submitted

    async def sweep(self, n: int) -> None:
        """Find the concurrency the API server takes best for N jobs: the same creates at each
        level, in a namespace of their own (not watched), the fastest wins. Before the rounds of
        N, each level's pods gone before the next: a round right after a sweep would share the
        machine with the scheduler's, kwok's and the namespace controller's work on the 2,400
        pods the sweep made (measured at 100 jobs: that round's pods all Running after 54 s
        instead of 14 s, and none bound while they were being created)."""
        assert self.api
        sweep = {}
        names = [f"j{i:04d}" for i in range(n)]
        for c in self.args.bare_concurrency:
            sns = f"sweep-{n}-c{c}-{os.getpid() % 10000}"
            await self.api.call(
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": sns}},
            )
            await self._default_sa(sns)
            t0 = time.monotonic()
            await self._bare_create(sns, names, 1, c, gated=True)
            sweep[c] = round(time.monotonic() - t0, 3)
            await self.api.call(
                "DELETE", f"/api/v1/namespaces/{sns}/pods", {"gracePeriodSeconds": 0}
            )
            await self.api.call("DELETE", f"/api/v1/namespaces/{sns}", {})
            for _ in range(600):
                got = await self.api.call("GET", f"/api/v1/namespaces/{sns}", ok=(404,))
                if got.get("kind") == "Status":  # 404: gone
                    break
                await asyncio.sleep(0.5)
        self.bare_best = min(sweep, key=lambda c: sweep[c])
        self.bare_sweep = sweep
        log(f"bare client: seconds for all creates by requests in flight {sweep}: {self.bare_best}")

    async def _bare_create(
        self,
        ns: str,
        names: list[str],
        attempt: int,
        concurrency: int,
        *,
        job: bool = False,
        gated: bool = False,
    ) -> dict[str, float]:
        """Each job's attempt; `job`: the TrainingJob itself first and its status write last.
        `gated`: the pods with a scheduling gate, so that neither the scheduler nor kwok ever
        works on them (the sweep's: when kwok had started the sweep's 2,400 pods and seen them
        deleted, the next round's pods took 35-42 s to run instead of 15 s)."""
        assert self.api
        api = self.api
        sem = asyncio.Semaphore(concurrency)
        submitted: dict[str, float] = {}
        jobs = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/trainingjobs"

        async def post(obj: dict[str, Any]) -> None:
            async with sem:
                await api.call("POST", collection(obj, ns), obj, ok=(409,))

        async def one(name: str) -> None:
            objs = bare_objects(ns, name, self.args.pods, attempt)
            if gated:
                for obj in objs:
                    if obj["kind"] == "Pod":
                        obj["spec"]["schedulingGates"] = [{"name": SWEEP_GATE}]
            submitted[name] = time.monotonic()
            if job:
                async with sem:
                    await api.call(
                        "POST", jobs, kubetrain_job(name, self.args.pods, None), ok=(409,)
                    )
            first = [o for o in objs if o["kind"] == "ServiceAccount"]
            await asyncio.gather(*(post(o) for o in first))  # pods need their account
            await asyncio.gather(*(post(o) for o in objs if o["kind"] != "ServiceAccount"))
            if job:
                async with sem:
                    await api.call(
                        "PATCH",
                        f"{jobs}/{name}/status",
                        bare_status(attempt, self.args.pods),
                        content_type="application/merge-patch+json",
                    )

        await asyncio.gather(*(one(n) for n in names))
        return submitted

    async def restart(
        self,
        system: str,
        ns: str,
        tracker: Tracker,
        names: list[str],
        notice_jobs: list[str],
        result: dict[str, Any],
    ) -> None:
        """One rank of R running jobs fails at once; time the new gang (or pod) created, Running."""
        assert self.api
        api = self.api
        pods = self.args.pods
        count = min(self.args.restarts, len(names) // 2)
        victims = [n for n in names if n not in notice_jobs][-count:] if count else []
        per_job = tracker.by_job()
        old = {p.uid for v in victims for p in per_job[v]}
        expect = 1 if system.startswith("pytorch") else pods
        failed_at: dict[str, float] = {}

        async def fail(job: str) -> None:
            rank1 = next(p for p in per_job[job] if p.rank == 1 and not p.deleted)
            failed_at[job] = time.monotonic()
            code = "137" if system.startswith("pytorch") else "1"
            await api.call(
                "PATCH",
                f"/api/v1/namespaces/{ns}/pods/{rank1.name}",
                {
                    "metadata": {
                        "annotations": {
                            "sim.test/outcome": "Failed",
                            "sim.test/exit-code": code,
                            "sim.test/after": "0s",
                        }
                    }
                },
                content_type="application/merge-patch+json",
            )
            if system.startswith("bare"):
                # The bare gang restart, as fast as a watch allows: the rank's failure seen,
                # delete every pod, wait until they are gone, create the next gang.
                await tracker.until(
                    lambda: tracker.pods[rank1.uid].failed is not None, 120, "the failure"
                )
                await asyncio.gather(
                    *(
                        api.call("DELETE", f"/api/v1/namespaces/{ns}/pods/{p.name}", {}, ok=(404,))
                        for p in per_job[job]
                    )
                )
                uids = {p.uid for p in per_job[job]}
                await tracker.until(lambda: not uids & tracker.live, 120, "the old pods gone")
                await self._bare_create(
                    ns, [job], 2, self.bare_best or 64, job=system == "bare-job"
                )

        overlap_max = 0

        await asyncio.gather(*(fail(v) for v in victims))

        def done() -> bool:
            nonlocal overlap_max
            jobs = tracker.by_job(exclude=old)
            for v in victims:
                alive_old = sum(1 for p in per_job[v] if p.uid in tracker.live)
                if any(p.uid in tracker.live for p in jobs.get(v, [])) and alive_old:
                    overlap_max = max(overlap_max, alive_old)
            return all(sum(1 for p in jobs.get(v, []) if p.running) >= expect for v in victims)

        await tracker.until(done, self.args.timeout, f"{system}: restarted gangs Running")
        created, running = [], []
        jobs = tracker.by_job(exclude=old)
        for v in victims:
            new = sorted(jobs.get(v, []), key=lambda p: p.created)[:expect]
            if len(new) >= expect:
                created.append(new[-1].created - failed_at[v])
                if all(p.running for p in new):
                    running.append(max(p.running for p in new) - failed_at[v])  # type: ignore[type-var]
        result["restart_jobs"] = len(victims)
        result["restart_pods_replaced"] = expect
        result["fail_to_new_gang_created"] = summary(created)
        result["fail_to_new_gang_running"] = summary(running)
        # kubetrain's guarantee, as the watch saw it: a new attempt's pod never beside an old one.
        result["restart_old_pods_alive_with_new"] = overlap_max

    async def notice(
        self, ns: str, tracker: Tracker, notice_jobs: list[str], result: dict[str, Any]
    ) -> None:
        """The NTH spot taint on every notice node at once; time until each gang's pods all carry
        the checkpoint request."""
        assert self.api
        api = self.api
        per_job = tracker.by_job()
        gangs = {j: [p for p in per_job[j] if not p.deleted] for j in notice_jobs}
        t0 = time.monotonic()

        async def taint(i: int) -> None:
            node = await api.call("GET", f"/api/v1/nodes/notice-{i}")
            taints = (node["spec"].get("taints") or []) + [
                {"key": TAINT_NTH_SPOT_ITN, "value": "bench", "effect": "NoSchedule"}
            ]
            await api.call(
                "PATCH",
                f"/api/v1/nodes/notice-{i}",
                {"spec": {"taints": taints}},
                content_type="application/merge-patch+json",
            )

        await asyncio.gather(*(taint(i) for i in range(len(notice_jobs))))
        await tracker.until(
            lambda: all(p.requested for g in gangs.values() for p in g), 60, "checkpoint requests"
        )
        lat = [
            max(p.requested for p in g) - t0 for g in gangs.values() if all(p.requested for p in g)
        ]  # type: ignore[type-var]
        result["notice_jobs"] = len(notice_jobs)
        result["notice_to_all_requested"] = summary(lat)
        await asyncio.gather(
            *(
                api.call(
                    "PATCH",
                    f"/api/v1/nodes/notice-{i}",
                    {
                        "spec": {
                            "taints": [{"key": NOTICE_TAINT, "value": "x", "effect": "NoSchedule"}]
                        }
                    },
                    content_type="application/merge-patch+json",
                )
                for i in range(len(notice_jobs))
            )
        )

    async def cleanup(self, system: str, ns: str, ctl: Controller) -> None:
        assert self.api
        api = self.api
        with contextlib.suppress(Exception):
            if system.startswith("kubetrain") or system == "bare-job":
                await api.call(
                    "DELETE", f"/apis/kubetrain.dev/v1alpha1/namespaces/{ns}/trainingjobs", {}
                )
            elif system.startswith("jobset"):
                await api.call(
                    "DELETE", f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{ns}/jobsets", {}
                )
            elif system.startswith("pytorch"):
                await api.call("DELETE", f"/apis/kubeflow.org/v1/namespaces/{ns}/pytorchjobs", {})
        with contextlib.suppress(Exception):
            await api.call("DELETE", f"/api/v1/namespaces/{ns}/pods", {"gracePeriodSeconds": 0})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            left = await api.call(
                "GET",
                f"/apis/kubetrain.dev/v1alpha1/namespaces/{ns}/trainingjobs",
                params={"limit": "1"},
            )
            pods = await api.call("GET", f"/api/v1/namespaces/{ns}/pods", params={"limit": "1"})
            if not left["items"] and not pods["items"]:
                break
            with contextlib.suppress(Exception):
                await api.call("DELETE", f"/api/v1/namespaces/{ns}/pods", {"gracePeriodSeconds": 0})
            await asyncio.sleep(0.5)
        ctl.stop()
        await api.call("DELETE", f"/api/v1/namespaces/{ns}", {}, ok=(404,))

    # ----- the whole run
    async def main(self) -> dict[str, Any]:
        assert self.cluster
        self.api = Api(self.cluster.kubeconfig)
        try:
            return await self._main()
        finally:
            await self.api.close()

    async def _main(self) -> dict[str, Any]:
        args = self.args
        biggest = max(args.jobs)
        plain = max(2, math.ceil(biggest * args.pods * 1.25 / PODS_PER_PLAIN_NODE))
        # Only the bench's own nodes: the local pools' GPU nodes are tainted and spread over zones
        # (kubetrain's zone choice would count them as room its pods cannot use).
        assert self.api
        for node in (await self.api.call("GET", "/api/v1/nodes"))["items"]:
            await self.api.call(
                "DELETE", f"/api/v1/nodes/{node['metadata']['name']}", {}, ok=(404,)
            )
        log(
            f"adding {plain} plain kwok nodes ({PODS_PER_PLAIN_NODE} pods each) and {args.notices} notice nodes"
        )
        await self.add_nodes(plain, prefix="plain", pods=PODS_PER_PLAIN_NODE)
        if any(s.startswith("kubetrain") for s in args.systems) and args.notices:
            await self.add_nodes(args.notices, prefix="notice", pods=args.pods, notice=True)
        rounds = []
        for n in args.jobs:
            reps = args.reps if n <= args.reps_up_to else 1
            systems = args.systems if n <= args.reps_up_to else args.large_systems
            if any(s.startswith("bare") for s in systems) and (
                n <= args.reps_up_to or self.bare_best is None
            ):
                await self.sweep(n)  # the largest N reuses the last
            for rep in range(reps):
                order = list(systems)
                k = rep % len(order)
                order = order[k:] + order[:k]
                for system in order:
                    log(f"round: {system}, {n} jobs x {args.pods} pods, rep {rep}")
                    t = time.monotonic()
                    r = await self.round(system, n, rep)
                    r["round_wall_s"] = round(time.monotonic() - t, 1)
                    log(
                        json.dumps(
                            {
                                k: r.get(k)
                                for k in (
                                    "system",
                                    "jobs",
                                    "all_pods_created_s",
                                    "all_pods_running_s",
                                    "submit_to_gang_created",
                                    "fail_to_new_gang_created",
                                    "controller_cpu_s",
                                    "controller_rss_mib",
                                    "notice_to_all_requested",
                                )
                            }
                        )
                    )
                    rounds.append(r)
                    self.save(rounds)
        return {"rounds": rounds}

    def save(self, rounds: list[dict[str, Any]]) -> None:
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "benchmark": "hack/bench/scale.py",
            "command": " ".join(["hack/bench/scale.py", *sys.argv[1:]]),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg_at_save": os.getloadavg()},
            "pods_per_job": self.args.pods,
            "rounds": rounds,
            "summary": summarize(rounds),
        }  # fmt: skip
        doc["goals"] = goals(doc["summary"])
        out.write_text(json.dumps(doc, indent=1) + "\n")
        out.with_suffix(".md").write_text(table(doc["summary"], doc["command"]))

    def close(self) -> None:
        if self.run_dir.exists() and not self.args.keep:
            log("stopping the local control plane")
            cluster_sh("down", self.run_dir)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.args.keep:
            log(f"kept the controllers' logs in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def collection(obj: dict[str, Any], ns: str) -> str:
    kind = obj["kind"]
    plural = {"ServiceAccount": "serviceaccounts", "Service": "services", "Pod": "pods",
              "Role": "roles", "RoleBinding": "rolebindings"}[kind]  # fmt: skip
    prefix = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    return f"{prefix}/namespaces/{ns}/{plural}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (system, N): the median over repetitions of each headline number."""
    out: dict[str, Any] = {}
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rounds:
        groups.setdefault((r["system"], r["jobs"]), []).append(r)

    def med(rs: list[dict[str, Any]], *path: str) -> float | None:
        vals = []
        for r in rs:
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                vals.append(float(v))
        return round(statistics.median(vals), 3) if vals else None

    for (system, n), rs in sorted(groups.items()):
        out[f"{system}/{n}"] = {
            "rounds": len(rs),
            "gang_created_p50": med(rs, "submit_to_gang_created", "p50"),
            "gang_created_p95": med(rs, "submit_to_gang_created", "p95"),
            "first_pod_p50": med(rs, "submit_to_first_pod", "p50"),
            "all_pods_created_s": med(rs, "all_pods_created_s"),
            "all_pods_running_s": med(rs, "all_pods_running_s"),
            "restart_created_p50": med(rs, "fail_to_new_gang_created", "p50"),
            "restart_created_p95": med(rs, "fail_to_new_gang_created", "p95"),
            "restart_running_p95": med(rs, "fail_to_new_gang_running", "p95"),
            "controller_cpu_s_create": med(rs, "controller_cpu_s_create"),
            "passes_per_job": med(rs, "passes_per_job_create"),
            "api_requests_per_job": med(rs, "api_requests_per_job_create"),
            "controller_cpu_s": med(rs, "controller_cpu_s"),
            "controller_rss_mib": med(rs, "controller_rss_mib_end"),
            "kcm_cpu_s": med(rs, "control_plane_cpu_s", "kube-controller-manager"),
            "apiserver_cpu_s": med(rs, "control_plane_cpu_s", "kube-apiserver"),
            "notice_p95": med(rs, "notice_to_all_requested", "p95"),
            "restart_overlap": med(rs, "restart_old_pods_alive_with_new"),
            "create_busy": med(rs, "create_window", "busy"),
            "create_cpu_all": med(
                [
                    {"v": sum(r["create_window"]["cpu_s"].values())}
                    for r in rs
                    if "create_window" in r
                ],
                "v",
            ),
            "create_cpu_controller": med(rs, "create_window", "cpu_s", "controller"),
            "create_cpu_apiserver": med(rs, "create_window", "cpu_s", "kube-apiserver"),
        }
        if system.startswith(
            "bare"
        ):  # no controller (its apiserver CPU includes the concurrency sweep)
            for key in ("controller_cpu_s_create", "controller_cpu_s", "controller_rss_mib"):
                out[f"{system}/{n}"][key] = None
    return out


ROWS = (
    ("submit -> gang created, p50 / p95 (s)", "gang_created_p50", "gang_created_p95"),
    ("submit -> first pod, p50 (s)", "first_pod_p50", None),
    ("all pods created (s)", "all_pods_created_s", None),
    ("all pods Running (s)", "all_pods_running_s", None),
    (
        "rank failure -> new gang created, p50 / p95 (s)",
        "restart_created_p50",
        "restart_created_p95",
    ),
    ("rank failure -> new gang Running, p95 (s)", "restart_running_p95", None),
    ("old pods alive beside new ones (max)", "restart_overlap", None),
    ("spot notice -> every pod asked, p95 (s)", "notice_p95", None),
    ("until all pods created: cores busy (share of all)", "create_busy", None),
    (
        "until all pods created: CPU of every process / the controller (s)",
        "create_cpu_all",
        "create_cpu_controller",
    ),
    ("until all pods created: kube-apiserver CPU (s)", "create_cpu_apiserver", None),
    ("controller CPU, whole round (s)", "controller_cpu_s", None),
    ("controller CPU to create (s)", "controller_cpu_s_create", None),
    ("kubetrain: reconcile passes per job, to all Running", "passes_per_job", None),
    ("kubetrain: API requests per job, to all Running", "api_requests_per_job", None),
    ("kube-controller-manager CPU (s)", "kcm_cpu_s", None),
    ("kube-apiserver CPU (s)", "apiserver_cpu_s", None),
    ("controller RSS at the end (MiB)", "controller_rss_mib", None),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's goals, each as measured in this run (a ratio against a baseline of the same
    run where the goal is one); a goal whose rounds did not run is left out."""

    def get(system: str, n: int, key: str) -> float | None:
        value = summary.get(f"{system}/{n}", {}).get(key)
        return float(value) if isinstance(value, (int, float)) else None

    def per_job(system: str, n: int, key: str) -> float | None:
        value = get(system, n, key)
        return value / n if value is not None else None

    out: list[dict[str, Any]] = []

    def goal(
        what: str,
        measured: float | None,
        limit: float,
        *,
        below: bool = False,
        floor: float | None = None,
    ) -> None:
        """`floor`: the same measure for a bare client, where no controller can do better."""
        if measured is not None:
            met = measured < limit if below else measured <= limit
            row = {"goal": what, "measured": measured, "limit": limit, "met": met}
            out.append({**row, "floor": floor} if floor is not None else row)

    ns = sorted({int(k.rsplit("/", 1)[1]) for k in summary if k.startswith("kubetrain/")})
    for n in [n for n in ns if n == 100] or ns[:1]:
        goal(
            f"all pods of {n} x 8 created, / bare",
            _ratio(get("kubetrain", n, "all_pods_created_s"), get("bare", n, "all_pods_created_s")),
            1.3,
            floor=_ratio(
                get("bare-job", n, "all_pods_created_s"), get("bare", n, "all_pods_created_s")
            ),
        )
        for peer in ("pytorch-tuned", "jobset-tuned"):
            for q in ("p50", "p95"):
                key = f"gang_created_{q}"
                goal(
                    f"submit -> gang created {q} ({n} jobs), / {peer}",
                    _ratio(get("kubetrain", n, key), get(peer, n, key)),
                    1.0,
                    below=True,
                )
        goal(
            f"rank failure -> new gang created p95 ({n} jobs), / bare",
            _ratio(
                get("kubetrain", n, "restart_created_p95"), get("bare", n, "restart_created_p95")
            ),
            1.5,
        )
        # Creating the gangs: the whole round's also has kubetrain's spot notices, which the
        # peers do not do.
        goal(
            f"controller CPU to create {n} gangs, / JobSet's controller",
            _ratio(
                get("kubetrain", n, "controller_cpu_s_create"),
                get("jobset", n, "controller_cpu_s_create"),
            ),
            2.0,
        )
        goal(
            f"spot notice -> every pod asked p95 ({n} jobs), s",
            get("kubetrain", n, "notice_p95"),
            0.5,
            below=True,
        )
    if len(ns) > 1:
        small, large = ns[0], ns[-1]
        goal(
            f"time per job, {large} / {small} jobs (all pods created / N)",
            _ratio(
                per_job("kubetrain", large, "all_pods_created_s"),
                per_job("kubetrain", small, "all_pods_created_s"),
            ),
            1.2,
            floor=_ratio(
                per_job("bare", large, "all_pods_created_s"),
                per_job("bare", small, "all_pods_created_s"),
            ),
        )
        goal(
            f"controller RSS at {large} jobs, MiB",
            get("kubetrain", large, "controller_rss_mib"),
            200.0,
        )
    goal(
        "old pods alive beside new ones (max over every N)",
        max((get("kubetrain", n, "restart_overlap") or 0.0 for n in ns), default=None),
        0.0,
    )
    return out  # fmt: skip


def table(summary: dict[str, Any], command: str) -> str:
    """One markdown table per N: a column per system (medians over repetitions)."""
    out = [f"Made by `{command}`; medians over repetitions; times from a watch.", ""]
    by_n: dict[int, list[str]] = {}
    for key in summary:
        system, n = key.rsplit("/", 1)
        by_n.setdefault(int(n), []).append(system)
    for n, systems in sorted(by_n.items()):
        out += [f"**{n} jobs x 8 pods**", ""]
        out.append("| | " + " | ".join(systems) + " |")
        out.append("|---|" + "---|" * len(systems))
        for label, a, b in ROWS:
            cells = []
            for system in systems:
                row = summary[f"{system}/{n}"]
                va, vb = row.get(a), row.get(b) if b else None
                cell = "-" if va is None else f"{va:g}"
                if b:
                    cell += " / " + ("-" if vb is None else f"{vb:g}")
                cells.append(cell)
            if any(c not in ("-", "- / -") for c in cells):
                out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    rows = goals(summary)
    if rows:
        out += ["**Goals (issue 14), measured in this run**", ""]
        out += ["| goal | measured | limit | met | floor |", "|---|---|---|---|---|"]
        for row in rows:
            met = "yes" if row["met"] else "no"
            floor = f"{row['floor']:g}" if "floor" in row else ""
            out.append(
                f"| {row['goal']} | {row['measured']:g} | {row['limit']:g} | {met} | {floor} |"
            )
        out += [
            "",
            "floor: the same measure for a bare client, which no controller beats: bare-job's"
            " (the job's create and one status write besides the attempt's objects) for all pods"
            " created; bare's own for time per job.",
        ]
        out.append("")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", default="10,100,1000", help="comma-separated N (default 10,100,1000)")
    ap.add_argument("--pods", type=int, default=8, help="pods per job (default 8)")
    ap.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}"
    )
    ap.add_argument(
        "--reps", type=int, default=2, help="repetitions per N up to --reps-up-to (default 2)"
    )
    ap.add_argument("--reps-up-to", type=int, default=100, help="larger N run once (default 100)")
    ap.add_argument(
        "--large-systems",
        default=None,
        help="systems for N above --reps-up-to (default: --systems; the peers at shipped defaults "
        "take most of an hour at 1000 jobs on 2 cores)",
    )
    ap.add_argument(
        "--restarts", type=int, default=20, help="jobs failed at once per round (default 20)"
    )
    ap.add_argument(
        "--notices", type=int, default=10, help="kubetrain: spot notices at once (default 10)"
    )
    ap.add_argument(
        "--notice-settle",
        type=float,
        default=10.0,
        help="seconds between the restart phase and the spot notices (default 10)",
    )
    ap.add_argument("--bare-concurrency", default="16,64,256", help="requests in flight to sweep")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per phase of a round")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds for a controller to start")
    ap.add_argument(
        "--profile", metavar="DIR", help="run kubetrain under py-spy; collapsed stacks into DIR"
    )
    ap.add_argument(
        "--baseline",
        default=str(ROOT),
        help="kubetrain-baseline runs the operator from this checkout (e.g. a worktree of main)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="leave the cluster running and the controllers' logs"
    )
    ap.add_argument("--out", default=str(ROOT / "hack" / "bench" / "results" / "bench_scale.json"))
    args = ap.parse_args()
    args.jobs = [int(x) for x in args.jobs.split(",")]
    args.systems = [s for s in args.systems.split(",") if s]
    args.large_systems = [s for s in (args.large_systems or ",".join(args.systems)).split(",") if s]
    args.bare_concurrency = [int(x) for x in args.bare_concurrency.split(",")]
    for s in args.systems + args.large_systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}: choose from {', '.join(SYSTEMS)}")
    bench = Bench(args)
    try:
        bench.start()
        asyncio.run(bench.main())
    finally:
        bench.close()
    log(f"results: {args.out}")


if __name__ == "__main__":
    main()
