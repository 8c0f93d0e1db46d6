"""The runtime's only door to the Kubernetes API: read, watch and annotate the pod it runs in.

Standard library only (http.client + ssl), so a training image needs no Kubernetes client: three
calls on one pod do not justify one. Credentials are the pod's ServiceAccount (the projected token
is re-read on every request, as bound tokens rotate), or KUBECONFIG when set, which is how tests and
local processes standing in for containers reach a cluster (token or client-certificate users; a
YAML kubeconfig needs PyYAML, a JSON one nothing).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT = 30.0


class PodAPIError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where the API server is and how to prove who we are."""

    host: str
    port: int
    context: ssl.SSLContext
    token_file: Path | None = None
    token: str | None = None

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    @classmethod
    def in_cluster(cls) -> Endpoint:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError(
                "not in a pod (KUBERNETES_SERVICE_HOST unset) and KUBECONFIG not set: the "
                "checkpoint agent cannot reach the API server"
            )
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        return cls(host, int(port), context, token_file=SERVICE_ACCOUNT / "token")

    @classmethod
    def from_kubeconfig(cls, path: str) -> Endpoint:
        config = _load_config(Path(path))
        current = config.get("current-context")
        context = _named(config.get("contexts"), current, "context")
        cluster = _named(config.get("clusters"), context.get("cluster"), "cluster")
        user = _named(config.get("users"), context.get("user"), "user")
        url = urllib.parse.urlsplit(str(cluster["server"]))
        if url.scheme != "https" or not url.hostname:
            raise RuntimeError(f"{path}: only https API servers are supported, not {url.geturl()}")
        tls = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            tls.load_verify_locations(cadata=_b64(cluster["certificate-authority-data"]))
        elif cluster.get("certificate-authority"):
            tls.load_verify_locations(cafile=str(cluster["certificate-authority"]))
        cert = _material(user, "client-certificate")
        key = _material(user, "client-key")
        if cert and key:
            tls.load_cert_chain(cert, key)
        token = user.get("token")
        token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
        return cls(url.hostname, url.port or 443, tls, token_file=token_file, token=token)


def _load_config(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        value = json.loads(text)
    except ValueError:
        import yaml  # a YAML kubeconfig (the usual kind): PyYAML, imported only here

        value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise RuntimeError(f"{path} is not a kubeconfig")
    return value


def _named(items: Any, name: Any, key: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return dict(item.get(key) or {})
    raise RuntimeError(f"kubeconfig has no {key} named {name!r}")


def _b64(data: str) -> str:
    return base64.b64decode(data).decode()


def _material(user: Mapping[str, Any], key: str) -> str | None:
    """A client certificate or key as a file path (inline data goes to a private temp file)."""
    if user.get(key):
        return str(user[key])
    data = user.get(f"{key}-data")
    if not data:
        return None
    with tempfile.NamedTemporaryFile(
        "w", prefix="kubetrain-", suffix=".pem", delete=False
    ) as handle:  # mode 0600 (mkstemp)
        handle.write(_b64(data))
    return handle.name


class PodAPI:
    def __init__(self, name: str, namespace: str) -> None:
        kubeconfig = os.environ.get("KUBECONFIG")
        self.endpoint = (
            Endpoint.from_kubeconfig(kubeconfig.split(os.pathsep)[0])
            if kubeconfig
            else Endpoint.in_cluster()
        )
        self.name, self.namespace = name, namespace
        self.path = f"/api/v1/namespaces/{namespace}/pods"

    def _connect(self, timeout: float) -> http.client.HTTPSConnection:
        e = self.endpoint
        return http.client.HTTPSConnection(e.host, e.port, context=e.context, timeout=timeout)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubetrain-runtime"}
        token = self.endpoint.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> Any:
        conn = self._connect(REQUEST_TIMEOUT)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers=self._headers(content_type))
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise PodAPIError(response.status, _message(data))
        return json.loads(data) if data else None

    def annotations(self) -> dict[str, str]:
        pod = self._request("GET", f"{self.path}/{self.name}")
        return dict((pod.get("metadata") or {}).get("annotations") or {})

    def annotate(self, key: str, value: str) -> None:
        """Merge-patch one annotation on our own pod (the job's Role allows exactly this)."""
        body = {"metadata": {"annotations": {key: value}}}
        self._request("PATCH", f"{self.path}/{self.name}", body, "application/merge-patch+json")

    def _events(
        self, resource_version: str | None, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        query = {
            "watch": "1",
            "fieldSelector": f"metadata.name={self.name}",
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        conn = self._connect(timeout_seconds + REQUEST_TIMEOUT)
        try:
            conn.request(
                "GET", f"{self.path}?{urllib.parse.urlencode(query)}", headers=self._headers()
            )
            response = conn.getresponse()
            if response.status >= 300:
                raise PodAPIError(response.status, _message(response.read()))
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

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
        resource_version: str | None = None
        while not stop.is_set():
            try:
                for event in self._events(resource_version, timeout_seconds):
                    if stop.is_set():
                        return
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise PodAPIError(int(obj.get("code") or 0), str(obj.get("message")))
                    meta = obj.get("metadata") or {}
                    resource_version = meta.get("resourceVersion") or resource_version
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        on_change(dict(meta.get("annotations") or {}))
            except PodAPIError as exc:
                if exc.status == 410:
                    resource_version = None
                else:
                    log.warning("watching pod %s/%s: %s", self.namespace, self.name, exc)
                    stop.wait(1.0)
            except (OSError, http.client.HTTPException, ValueError) as exc:  # resets: retry
                log.warning("watching pod %s/%s: %s", self.namespace, self.name, exc)
                stop.wait(1.0)


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message") or data[:200])
    except (ValueError, AttributeError):
        return data[:200].decode(errors="replace")
