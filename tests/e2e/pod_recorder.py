"""Remembers every annotation a job's pods ever carried, from a watch.

The operator answers a spot notice within a fraction of a second: request, commit, delete. A test
that polls `kubectl get pods` can miss a pod that already went; a watch sees every version.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from cluster import Cluster
from kubetrain.api.constants import ANNOTATION_CHECKPOINT_REQUEST, LABEL_ATTEMPT, LABEL_JOB


class PodRecorder:
    def __init__(self, cluster: Cluster, namespace: str, job: str) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(cluster.api_client())
        self._namespace, self._job = namespace, job
        self._seen: dict[str, dict[str, str]] = {}  # pod -> annotations (latest value per key)
        self._attempt: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-recorder", daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self._core.list_namespaced_pod,
                    self._namespace,
                    label_selector=f"{LABEL_JOB}={self._job}",
                    timeout_seconds=2,
                ):
                    meta = event["object"].metadata
                    with self._lock:
                        self._seen.setdefault(meta.name, {}).update(meta.annotations or {})
                        self._attempt[meta.name] = (meta.labels or {}).get(LABEL_ATTEMPT, "")
            except Exception as exc:  # a dropped watch: start another
                if not self._stop.is_set():
                    self.errors.append(exc)

    def requests(self, attempt: int, pods: int) -> list[dict[str, Any]] | None:
        """The checkpoint request every pod of `attempt` received, by pod name; None until all."""
        with self._lock:
            names = sorted(n for n, a in self._attempt.items() if a == str(attempt))
            raw = [self._seen[n].get(ANNOTATION_CHECKPOINT_REQUEST) for n in names]
        if len(raw) != pods or not all(raw):
            return None
        return [json.loads(r) for r in raw if r]
