"""Remembers every annotation a job's pods ever carried, from a watch (tests/pod_watch.py).

The operator answers a spot notice within a fraction of a second: request, commit, delete. A test
that polls `kubectl get pods` can miss a pod that already went; a watch sees every version.
"""

from __future__ import annotations

import json
from typing import Any

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_RESUMED,
    ENV_RESUME_MANIFEST,
    LABEL_ATTEMPT,
    LABEL_JOB,
)
from pod_watch import PodWatch


class PodRecorder(PodWatch):
    def __init__(self, cluster: Cluster, namespace: str, job: str) -> None:
        super().__init__(cluster, namespace, f"{LABEL_JOB}={job}", name="pod-recorder")
        self._seen: dict[str, dict[str, str]] = {}  # pod -> annotations (latest value per key)
        self._attempt: dict[str, str] = {}
        self._resume: dict[str, str] = {}  # pod -> its KUBETRAIN_RESUME_MANIFEST
        self._evicted: set[str] = set()  # pods seen with a DisruptionTarget condition

    def on_event(self, kind: str, pod: Any) -> None:
        meta = pod.metadata
        self._seen.setdefault(meta.name, {}).update(meta.annotations or {})
        self._attempt[meta.name] = (meta.labels or {}).get(LABEL_ATTEMPT, "")
        for var in pod.spec.containers[0].env or []:
            if var.name == ENV_RESUME_MANIFEST and var.value:
                self._resume[meta.name] = var.value
        if any(
            c.type == "DisruptionTarget" and c.status == "True" for c in pod.status.conditions or []
        ):
            self._evicted.add(meta.name)

    def requests(self, attempt: int, pods: int) -> list[dict[str, Any]] | None:
        """The checkpoint request every pod of `attempt` received, by pod name; None until all."""
        with self.lock:
            names = sorted(n for n, a in self._attempt.items() if a == str(attempt))
            raw = [self._seen[n].get(ANNOTATION_CHECKPOINT_REQUEST) for n in names]
        if len(raw) != pods or not all(raw):
            return None
        return [json.loads(r) for r in raw if r]

    def last_commit(self, pod: str) -> dict[str, Any] | None:
        """The last checkpoint commit `pod` (a rank 0) reported, as the watch saw it."""
        with self.lock:
            raw = self._seen.get(pod, {}).get(ANNOTATION_CHECKPOINT_COMMITTED)
        return dict(json.loads(raw)) if raw else None

    def resumed(self, pod: str) -> dict[str, Any] | None:
        """What `pod` (a rank 0) reported restoring (kubetrain.api.protocol.Resumed)."""
        with self.lock:
            raw = self._seen.get(pod, {}).get(ANNOTATION_RESUMED)
        return dict(json.loads(raw)) if raw else None

    def resume_manifests(self, attempt: int) -> dict[str, str]:
        """KUBETRAIN_RESUME_MANIFEST of every pod of `attempt`, by pod name."""
        with self.lock:
            return {n: m for n, m in self._resume.items() if self._attempt.get(n) == str(attempt)}

    def pods_of(self, attempt: int) -> list[str]:
        with self.lock:
            return sorted(n for n, a in self._attempt.items() if a == str(attempt))

    def evicted(self) -> set[str]:
        """Pods the watch saw with a DisruptionTarget condition (an eviction through the API)."""
        with self.lock:
            return set(self._evicted)
