"""A stand-in kubelet: runs the workload of simulated pods as real local processes.

kwok simulates pod phases but runs nothing. For end-to-end flows the containers' real code must
run: the checkpoint agent watching its own Pod through the API server, ranks agreeing on a step
over gloo, rank 0 committing a checkpoint. This harness does what a kubelet would for the pods of
one TrainingJob:

- starts a process for each Running pod, with the pod's env resolved like the kubelet does
  (plain values and downward-API fieldRefs), KUBECONFIG instead of the in-cluster token, and
  two local stand-ins: pod DNS -> 127.0.0.1 (MASTER_ADDR, with one port per attempt) and the FSx
  mount -> a local directory (env values under `mount_path` are rewritten);
- reports the process's exit code as the pod's outcome (the kwok stage annotations), also while
  the pod terminates: the kwok stages keep a deleted pod Running until its grace period ends or
  its workload reports an exit, as a kubelet does;
- sends SIGTERM when the pod is being deleted and SIGKILL when its grace period ends (at
  metadata.deletionTimestamp, so a second, shorter deletion brings it forward);
- `kill_node(node)` SIGKILLs everything on a node, as when an instance vanishes without notice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster import Cluster
from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB
from support import free_port


@dataclass
class Proc:
    pod: str
    node: str
    popen: subprocess.Popen[bytes]
    log: Path
    kill_at: float | None = None  # time.monotonic() at which the grace period ends
    grace: float = 30.0
    lost: bool = False  # killed with its node: no outcome is reported
    done: bool = False


@dataclass
class LocalKubelet:
    cluster: Cluster
    namespace: str
    job: str
    script: Path
    workdir: Path
    mount_path: str = "/fsx"
    extra_env: dict[str, str] = field(default_factory=dict)
    poll_seconds: float = 0.1

    def __post_init__(self) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(self.cluster.api_client())
        self._procs: dict[str, Proc] = {}  # by pod uid
        self._ports: dict[str, int] = {}  # by attempt
        self._exits: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="local-kubelet", daemon=True)
        self.errors: list[BaseException] = []

    # --- public ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for proc in self._procs.values():
                if proc.popen.poll() is None:
                    proc.popen.kill()
                    proc.popen.wait()

    @property
    def exits(self) -> list[tuple[str, int]]:
        """(pod, exit code) of every process that ended, in order."""
        with self._lock:
            return list(self._exits)

    def running_pods(self) -> set[str]:
        with self._lock:
            return {p.pod for p in self._procs.values() if p.popen.poll() is None}

    def kill_node(self, node: str) -> list[str]:
        """SIGKILL every process on `node` without reporting an outcome (the instance is gone)."""
        killed = []
        with self._lock:
            for proc in list(self._procs.values()):
                if proc.node == node and proc.popen.poll() is None:
                    proc.lost = True
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                    proc.popen.wait()
                    killed.append(proc.pod)
        return killed

    def log_of(self, pod: str) -> str:
        path = self.workdir / "logs" / f"{pod}.log"
        return path.read_text() if path.exists() else ""

    # --- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep going; the test sees the error list
                self.errors.append(exc)
            self._stop.wait(self.poll_seconds)

    def _sync(self) -> None:
        pods = self._core.list_namespaced_pod(
            self.namespace, label_selector=f"{LABEL_JOB}={self.job}"
        ).items
        seen = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            with self._lock:
                proc = self._procs.get(uid)
            if proc is not None and proc.done:
                continue
            if proc is None:
                if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
                    self._start(pod)
                continue
            if pod.metadata.deletion_timestamp is not None:
                self._terminate(proc, pod.metadata.deletion_timestamp)
            self._reap(proc)
        with self._lock:  # pods gone from the API: their containers stop, as on a kubelet
            gone = [p for uid, p in self._procs.items() if uid not in seen and not p.done]
        for proc in gone:
            self._terminate(proc)
            self._reap(proc, report=False)

    def _start(self, pod: Any) -> None:
        attempt = pod.metadata.labels.get(LABEL_ATTEMPT, "0")
        port = self._ports.setdefault(attempt, free_port())
        env = dict(os.environ)
        env.update(self._pod_env(pod))
        env.update(
            {
                "MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "PET_MASTER_PORT": str(port),
                "KUBECONFIG": self.cluster.kubeconfig,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{pod.metadata.name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, str(self.script)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        grace = float(pod.spec.termination_grace_period_seconds or 30)
        with self._lock:
            self._procs[pod.metadata.uid] = Proc(
                pod.metadata.name, pod.spec.node_name, popen, log, grace=grace
            )

    def _pod_env(self, pod: Any) -> dict[str, str]:
        fields = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": pod.metadata.namespace,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name or "",
            "spec.serviceAccountName": pod.spec.service_account_name or "",
            "status.podIP": pod.status.pod_ip or "",
            "status.hostIP": pod.status.host_ip or "",
        }
        env: dict[str, str] = {}
        for var in pod.spec.containers[0].env or []:
            if var.value is not None:
                value = var.value
            elif var.value_from is not None and var.value_from.field_ref is not None:
                value = fields.get(var.value_from.field_ref.field_path, "")
            else:
                continue
            if value == self.mount_path or value.startswith(self.mount_path + "/"):
                value = str(self.workdir / "mnt") + value
            env[var.name] = value
        return env

    def _terminate(self, proc: Proc, deletion_timestamp: datetime | None = None) -> None:
        """SIGTERM once, SIGKILL when the grace period is over (the pod's deletionTimestamp, or
        the pod's own grace once it vanished from the API without one)."""
        if proc.popen.poll() is not None:
            return
        now = time.monotonic()
        if deletion_timestamp is not None:
            left = (deletion_timestamp - datetime.now(UTC)).total_seconds()
            kill_at = now + max(0.0, left)
        else:
            kill_at = now + proc.grace
        if proc.kill_at is None:
            proc.kill_at = kill_at
            os.killpg(proc.popen.pid, signal.SIGTERM)
        else:
            proc.kill_at = min(proc.kill_at, kill_at)
        if now >= proc.kill_at:
            os.killpg(proc.popen.pid, signal.SIGKILL)

    def _reap(self, proc: Proc, report: bool = True) -> None:
        code = proc.popen.poll()
        if code is None:
            return
        with self._lock:
            if proc.done:
                return
            proc.done = True  # remembered, so the pod is never started twice
            exit_code = code if code >= 0 else 128 - code  # killed by signal N -> 128 + N
            self._exits.append((proc.pod, exit_code))
        if report and not proc.lost:
            outcome = "Succeeded" if exit_code == 0 else "Failed"
            self.cluster.kubectl(
                "annotate",
                "pod",
                proc.pod,
                "-n",
                self.namespace,
                "--overwrite",
                f"sim.test/exit-code={exit_code}",
                f"sim.test/outcome={outcome}",
                check=False,  # the pod may already be gone
            )
