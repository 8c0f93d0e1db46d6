"""The runtime's only door to the Kubernetes API: read, watch and annotate the pod it runs in.

Credentials are the pod's ServiceAccount (in-cluster config), or KUBECONFIG when set, which is how
tests and local processes standing in for containers reach a cluster. The kubernetes client is
imported lazily so training images without it still import `kubetrain.runtime`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PodAPI:
    def __init__(self, name: str, namespace: str) -> None:
        from kubernetes import client, config

        if os.environ.get("KUBECONFIG"):
            api_client = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        else:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            api_client = client.ApiClient(cfg)
        self.name, self.namespace = name, namespace
        self.core = client.CoreV1Api(api_client)

    def annotations(self) -> dict[str, str]:
        pod = self.core.read_namespaced_pod(self.name, self.namespace)
        return dict(pod.metadata.annotations or {})

    def annotate(self, key: str, value: str) -> None:
        """Merge-patch one annotation on our own pod (the job's Role allows exactly this)."""
        body = {"metadata": {"annotations": {key: value}}}
        self.core.patch_namespaced_pod(self.name, self.namespace, body)

    def watch_annotations(
        self,
        on_change: Callable[[dict[str, str]], None],
        stop: threading.Event,
        timeout_seconds: int = 30,
    ) -> None:
        """Call `on_change(annotations)` for the pod's current state and every later change.

        Reconnects after server-side timeouts and errors until `stop` is set; a 410 (history
        expired) restarts from a fresh list, which replays the current state.
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        resource_version: str | None = None
        while not stop.is_set():
            w = watch.Watch()
            kwargs: dict[str, Any] = {
                "field_selector": f"metadata.name={self.name}",
                "timeout_seconds": timeout_seconds,
                "allow_watch_bookmarks": True,
            }
            if resource_version:
                kwargs["resource_version"] = resource_version
            try:
                for event in w.stream(self.core.list_namespaced_pod, self.namespace, **kwargs):
                    if stop.is_set():
                        w.stop()
                        break
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":  # arrives as a plain dict, not a V1Pod
                        raw = event.get("raw_object") or obj
                        resource_version = raw["metadata"]["resourceVersion"]
                        continue
                    resource_version = obj.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        on_change(dict(obj.metadata.annotations or {}))
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                else:
                    log.warning("watching pod %s/%s: %s", self.namespace, self.name, exc)
                    stop.wait(1.0)
            except Exception as exc:  # connection resets: retry until stopped
                log.warning("watching pod %s/%s: %s", self.namespace, self.name, exc)
                stop.wait(1.0)
