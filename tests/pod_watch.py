"""One watch of a namespace's pods that sees every version the API server made, in order.

The operator answers a spot notice within a fraction of a second (request, commit, delete) and
binds or deletes a gang in one burst: a test that polls `kubectl get pods` misses the states in
between. A `PodWatch` lists once, then watches from that resourceVersion and, when the stream
drops, continues from the last version it saw, so each change arrives exactly once. Subclasses
keep what they need in `on_event`, called under `self.lock` from the watch thread; a gap (the
API server no longer has the history, HTTP 410) is recorded in `gaps` and the watch re-lists.
"""

from __future__ import annotations

import threading
from typing import Any

from cluster import Cluster


class PodWatch:
    def __init__(
        self, cluster: Cluster, namespace: str, selector: str | None = None, name: str = "pod-watch"
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(cluster.api_client())
        self.namespace, self.selector = namespace, selector
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []  # dropped streams (each continued)
        self.gaps: list[str] = []  # history lost (410): changes in between were not seen
        self._version = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Any:
        self._relist()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def on_event(self, kind: str, pod: Any) -> None:
        """One change (`kind` ADDED, MODIFIED or DELETED; `pod` a V1Pod), under `self.lock`."""
        raise NotImplementedError

    def _relist(self) -> None:
        """Start from now: the pods that exist arrive as ADDED, then every change after them."""
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector or "")
        with self.lock:
            for pod in listed.items:
                self.on_event("ADDED", pod)
        self._version = listed.metadata.resource_version

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector or "",
                    resource_version=self._version,
                    timeout_seconds=2,
                ):
                    pod = event["object"]
                    with self.lock:
                        self.on_event(event["type"], pod)
                    self._version = pod.metadata.resource_version
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    with self.lock:
                        self.gaps.append(f"watch history expired at {self._version}: {exc}")
                    self._relist()
                else:
                    self.errors.append(exc)
            except Exception as exc:  # a dropped stream: continue from the last version seen
                if not self._stop.is_set():
                    self.errors.append(exc)
