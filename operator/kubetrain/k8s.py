"""The one door to the Kubernetes API. Everything else in the operator is data in, data out.

Plain dicts over aiohttp (kopf's own HTTP stack), on the event loop: manifests from the builders
go out exactly as built, with no generated-model round trip that could drop fields. Credentials
are the ones kopf's watches use (`login`: the pod's service account, else $KUBECONFIG), re-read
every TOKEN_REFRESH_SECONDS (a projected token rotates). The official client is not imported: its
thousand generated models were a quarter of the operator's memory (issue 14). No thread
pool: the blocking client behind `asyncio.to_thread` had the default executor's min(32, cpus + 4)
threads for every job of the operator, so all gangs advanced in lockstep (issue 14). Requests in
flight are bounded by one connection pool (MAX_IN_FLIGHT), which is what the API server sees.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
import kopf
import msgspec

from kubetrain.api.constants import (
    GROUP,
    KIND,
    PLURAL,
    PODGROUP_API_VERSION,
    PODGROUP_KIND,
    PODGROUP_PLURAL,
    RESOURCE_FLAVOR_KIND,
    VERSION,
    WORKLOAD_KIND,
    WORKLOAD_PLURAL,
)

FIELD_MANAGER: Final = "kubetrain-operator"
EVENT_SOURCE: Final = "kubetrain-operator"
# Requests in flight at once (the connection pool's size). Enough for a few hundred gangs to
# advance together; the API server's own fairness (APF) queues the rest.
MAX_IN_FLIGHT: Final = 64
REQUEST_TIMEOUT_SECONDS: Final = 30.0
TOKEN_REFRESH_SECONDS: Final = 30.0  # re-read the credentials (a rotating token) this often

# kind -> (plural, namespaced) for every kind the builders may emit.
_KINDS: Final[dict[str, tuple[str, bool]]] = {
    "Pod": ("pods", True),
    "Service": ("services", True),
    "ServiceAccount": ("serviceaccounts", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "PersistentVolume": ("persistentvolumes", False),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "Event": ("events", True),
    KIND: (PLURAL, True),
    "ClusterKopfPeering": ("clusterkopfpeerings", False),
    "StorageClass": ("storageclasses", False),
    WORKLOAD_KIND: (WORKLOAD_PLURAL, True),
    RESOURCE_FLAVOR_KIND: ("resourceflavors", False),
    "PriorityClass": ("priorityclasses", False),
    PODGROUP_KIND: (PODGROUP_PLURAL, True),
}


class _Metadata(msgspec.Struct):
    resourceVersion: str = ""


class _Versioned(msgspec.Struct):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)


_VERSION = msgspec.json.Decoder(_Versioned)  # an object's resourceVersion, the rest skipped


class KubeError(RuntimeError):
    """An API call failed in a way the caller cannot treat as success.

    `message` is the API server's own explanation (the Status body's `message`, e.g. `Pod "x" is
    invalid: spec.containers[1].name: Required value`), which is what a user needs to fix a spec.
    """

    def __init__(self, verb: str, path: str, status: int, reason: str, message: str = "") -> None:
        text = f"{verb} {path}: HTTP {status} {reason}"
        super().__init__(f"{text}: {message}" if message else text)
        self.verb = verb
        self.path = path
        self.status = status
        self.reason = reason
        self.message = message


def api_message(body: object) -> str:
    """The `message` of a metav1.Status response body ("" when the body is not one)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:1024]
    return str(parsed.get("message") or "") if isinstance(parsed, dict) else ""


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """The operator's credentials, read now, as kopf's watches get them: the pod's service
    account, else the current context of $KUBECONFIG (~/.kube/config)."""
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: run the operator in a pod with a service account, "
            "or point $KUBECONFIG at a kubeconfig"
        )
    return info


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    try:
        plural, namespaced = _KINDS[kind]
    except KeyError:
        raise ValueError(f"kubetrain.k8s does not know how to create kind {kind!r}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} needs metadata.namespace")
        return f"{base}/namespaces/{namespace}/{plural}"
    return f"{base}/{plural}"


def resource_of(path: str) -> str:
    """The resource a request path names, with its subresource: ".../pods/x/status" ->
    "pods/status" (the API server's own request metrics label them so)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    parts = parts[2:] if parts[0] == "api" else parts[3:]  # past api/v1 or apis/group/version
    if len(parts) >= 2 and parts[0] == "namespaces":
        parts = parts[2:] if len(parts) > 2 else ["namespaces"]
    if not parts:
        return ""
    return f"{parts[0]}/{parts[2]}" if len(parts) > 2 else parts[0]


def _headers(info: kopf.ConnectionInfo, content_type: str = "application/json") -> dict[str, str]:
    return {"Accept": "application/json", "Content-Type": content_type, **info.as_http_headers()}


def _job_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


class Kube:
    """Async facade over the API server; methods return plain dicts and treat 404/409 explicitly.

    `credentials` reads the connection settings (server, CA, client certificate, token): once
    when the first request is made, then every TOKEN_REFRESH_SECONDS for the Authorization
    header. Requests go through one aiohttp session, made on first use in the running loop.
    """

    def __init__(
        self,
        credentials: Callable[[], kopf.ConnectionInfo] = login,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._info: kopf.ConnectionInfo | None = None
        self._info_at = -TOKEN_REFRESH_SECONDS
        self._reading: asyncio.Lock | None = None  # one read at a time, however many requests
        self._instance = socket.gethostname()
        self._max_in_flight = max_in_flight
        self._session: aiohttp.ClientSession | None = None
        # (verb, resource, HTTP status) -> requests sent (kubetrain.metrics exports them)
        self.requests: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def _stale(self) -> bool:
        return self._info is None or self._clock() - self._info_at >= TOKEN_REFRESH_SECONDS

    async def _connection(self) -> kopf.ConnectionInfo:
        if self._stale():
            self._reading = self._reading or asyncio.Lock()
            async with self._reading:
                if self._stale():  # not read meanwhile by the request that held the lock
                    # Reads files (the token, the kubeconfig): never on the event loop.
                    self._info = await asyncio.to_thread(self._credentials)
                    self._info_at = self._clock()
        assert self._info is not None
        return self._info

    async def _session_now(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        info = await self._connection()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=info.as_ssl_context(), limit=self._max_in_flight
                ),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
                trust_env=info.trust_env,
            )
        return self._session, info

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _acall(
        self,
        verb: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """The request's response, parsed."""
        data = await self._send(verb, path, body, query=query, content_type=content_type)
        return json.loads(data) if data else None

    async def _send(
        self,
        verb: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        """The request's raw response: where nothing reads it (creates, deletes, annotations,
        Events), parsing the whole object back costs CPU and memory for nothing (issue 14)."""
        session, info = await self._session_now()
        async with session.request(
            verb,
            info.server.rstrip("/") + path,
            params=[(k, str(v)) for k, v in query or []],
            data=None if body is None else json.dumps(body),
            headers=_headers(info, content_type),
            proxy=info.proxy_url or None,
        ) as response:
            data = await response.read()
            self.requests[(verb, resource_of(path), response.status)] += 1
            if response.status >= 400:
                raise KubeError(
                    verb, path, response.status, str(response.reason or ""), api_message(data)
                )
        return data

    async def get_raw(self, path: str, query: list[tuple[str, Any]]) -> bytes:
        """GET `path` unparsed: the caller decodes only what it reads (kubetrain.podwatch)."""
        return await self._send("GET", path, query=query)

    async def watch_raw(
        self, path: str, query: list[tuple[str, Any]], *, read_timeout: float
    ) -> AsyncIterator[bytes]:
        """A watch stream's events, one JSON line each, unparsed; ends when the server ends it.
        Lines are split here, not by aiohttp's readline, which refuses lines over 128 KiB (a pod
        with large annotations)."""
        session, info = await self._session_now()
        params = [(k, str(v)) for k, v in query] + [("watch", "true")]
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=REQUEST_TIMEOUT_SECONDS, sock_read=read_timeout
        )
        async with session.get(
            info.server.rstrip("/") + path,
            params=params,
            headers=_headers(info),
            proxy=info.proxy_url or None,
            timeout=timeout,
        ) as response:
            self.requests[("WATCH", resource_of(path), response.status)] += 1
            if response.status >= 400:
                data = await response.read()
                raise KubeError(
                    "WATCH", path, response.status, str(response.reason or ""), api_message(data)
                )
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The job as the API server has it now (never a cached view), or None when gone."""
        try:
            result: dict[str, Any] = await self._acall("GET", _job_path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def patch_job_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> str:
        """JSON-merge-patch `.status` through the status subresource (None deletes a key).
        Returns the resourceVersion the write left, all the caller reads of the stored job (the
        whole job is not parsed: it was a tenth of the operator's CPU at scale, issue 14)."""
        data = await self._send(
            "PATCH",
            _job_path(namespace, name) + "/status",
            {"status": dict(patch)},
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )
        return _VERSION.decode(data).metadata.resourceVersion

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the job (children follow by owner references); False when already gone."""
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        return await self._delete(_job_path(namespace, name), body)

    async def create(self, obj: Mapping[str, Any]) -> bool:
        """Create `obj`; True when created, False when it already exists (names are deterministic)."""
        meta = obj.get("metadata") or {}
        path = collection_path(str(obj["apiVersion"]), str(obj["kind"]), meta.get("namespace"))
        try:
            await self._send("POST", path, dict(obj), query=[("fieldManager", FIELD_MANAGER)])
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods as the API server has them now (not the watch's view, which may lag)."""
        result: dict[str, Any] = await self._acall(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            query=[("labelSelector", label_selector)],
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def delete_pod(
        self, namespace: str, name: str, uid: str, *, force: bool, grace: int | None = None
    ) -> bool:
        """Delete one pod of ours; `force` = grace period 0 (the kubelet is gone or stuck),
        `grace` = a grace period shorter than the pod's own (None: the pod's own).

        The uid precondition makes a stale request unable to delete a same-named pod of a later
        creation. Returns False when the pod is already gone.
        """
        body: dict[str, Any] = {"preconditions": {"uid": uid}} if uid else {}
        if force:
            body["gracePeriodSeconds"] = 0
        elif grace is not None:
            body["gracePeriodSeconds"] = grace
        return await self._delete(f"/api/v1/namespaces/{namespace}/pods/{name}", body)

    async def _delete(self, path: str, body: Mapping[str, Any]) -> bool:
        try:
            await self._send("DELETE", path, dict(body))
        except KubeError as exc:
            if exc.status in (404, 409):  # gone, or uid precondition failed (a newer object)
                return False
            raise
        return True

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        """JSON-merge-patch a pod (lifting the gang's scheduling gate); False when gone."""
        try:
            await self._acall(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                dict(patch),
                query=[("fieldManager", FIELD_MANAGER)],
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Merge annotations onto a pod (checkpoint requests, issue #4); False when gone."""
        try:
            await self._send(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                {"metadata": {"annotations": dict(annotations)}},
                query=[("fieldManager", FIELD_MANAGER)],
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_volumes(self, label_selector: str) -> None:
        """Delete cluster-scoped PVs we created for a job (reclaim Retain: data is untouched)."""
        await self._send(
            "DELETE", "/api/v1/persistentvolumes", {}, query=[("labelSelector", label_selector)]
        )

    async def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `api_version` (discovery; e.g. an alpha API
        that a cluster may or may not enable)."""
        try:
            result: dict[str, Any] = await self._acall("GET", f"/apis/{api_version}")
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in result.get("resources") or [])

    async def delete_podgroups(self, namespace: str, label_selector: str) -> None:
        """Delete the native PodGroups of earlier attempts (kubetrain.build.superseded_podgroups)."""
        await self._send(
            "DELETE",
            f"/apis/{PODGROUP_API_VERSION}/namespaces/{namespace}/{PODGROUP_PLURAL}",
            {},
            query=[("labelSelector", label_selector)],
        )

    async def get_storage_class(self, name: str) -> dict[str, Any] | None:
        """A StorageClass (the base of a provisioned FSx volume), or None when there is none."""
        try:
            result: dict[str, Any] = await self._acall(
                "GET", f"/apis/storage.k8s.io/v1/storageclasses/{name}"
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def delete_storage_classes(self, label_selector: str) -> None:
        """Delete the per-job StorageClasses we created (cluster-scoped: no owner reference)."""
        await self._send(
            "DELETE",
            "/apis/storage.k8s.io/v1/storageclasses",
            {},
            query=[("labelSelector", label_selector)],
        )

    async def ensure_cluster_peering(self, name: str) -> bool:
        """Create kopf's ClusterKopfPeering object so replicas of the operator coordinate.

        Shipping it in the kustomization would race its own CRD on the first `kubectl apply -k`.
        """
        return await self.create(
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
        )

    async def post_event(
        self,
        job: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
        now: dt.datetime | None = None,
    ) -> None:
        """A core/v1 Event on the job, shown by `kubectl describe tj` and `kubectl get events`."""
        meta = job.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self._send("POST", f"/api/v1/namespaces/{namespace}/events", event)

    # --- any kind the builders know (Kueue's Workload and ResourceFlavor, PriorityClass) ----------

    async def get_object(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """One object as the API server has it now, or None when there is none."""
        path = f"{collection_path(api_version, kind, namespace)}/{name}"
        try:
            result: dict[str, Any] = await self._acall("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def patch_object(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str = "",
    ) -> bool:
        """JSON-merge-patch one object (or its `subresource`); a `metadata.resourceVersion` in the
        patch makes it conditional. False when the object is gone or changed since it was read."""
        path = f"{collection_path(api_version, kind, namespace)}/{name}"
        try:
            await self._send(
                "PATCH",
                f"{path}/{subresource}" if subresource else path,
                dict(patch),
                query=[("fieldManager", FIELD_MANAGER)],
                content_type="application/merge-patch+json",
            )
        except KubeError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def delete_object(
        self, api_version: str, kind: str, namespace: str | None, name: str, uid: str
    ) -> bool:
        """Delete one object of this uid (not a newer one of the same name); False when gone."""
        path = f"{collection_path(api_version, kind, namespace)}/{name}"
        return await self._delete(path, {"preconditions": {"uid": uid}})
