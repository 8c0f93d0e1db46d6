"""The node agent's only door to the Kubernetes API: read and patch its own Node.

Separate from kubetrain.k8s on purpose: the agent needs two calls (RBAC: get/patch nodes), and
importing the operator's door would drag kopf into the DaemonSet's process.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol


class NodeApi(Protocol):
    def get_node(self, name: str) -> dict[str, Any]: ...

    def patch_node(self, name: str, patch: dict[str, Any]) -> None: ...


class Conflict(RuntimeError):
    """The Node changed between our read and our patch (HTTP 409): read again and recompute."""


class KubeNodeApi:
    """NodeApi over the official client: in-cluster config in a pod, else KUBECONFIG."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api_client = client.ApiClient()
        else:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        self._core = client.CoreV1Api(api_client)

    def get_node(self, name: str) -> dict[str, Any]:
        # Raw JSON keeps the node as plain dicts (taints exactly as the API server has them).
        response = self._core.read_node(name, _preload_content=False, _request_timeout=10)
        node: dict[str, Any] = json.loads(response.data)
        return node

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            # A dict body goes out as a strategic-merge patch (kubernetes.client.rest).
            self._core.patch_node(name, patch, _preload_content=False, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"node {name} changed while patching; retrying") from exc
            raise
