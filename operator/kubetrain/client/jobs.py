"""`TrainingJobClient`: submit, follow and steer TrainingJobs from Python (the CLI and the KFP
launcher are both built on it).

Talks to the API server with the official client (imported when a client is made, so importing
this module costs nothing); objects go in and come out as plain JSON dicts wrapped in the typed
views of `kubetrain.client.views`, never as generated client models.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_REQUEST,
    GROUP,
    LABEL_ATTEMPT,
    LABEL_JOB,
    PLURAL,
    REQUEST_REASON_MANUAL,
    REQUEST_THEN_CONTINUE,
    VERSION,
)
from kubetrain.client.views import CheckpointRef, JobView, PodView, Timeline, rank_pod

log = logging.getLogger(__name__)

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WORKER_CONTAINER = "worker"  # kubetrain.build.objects.WORKER_CONTAINER (no pydantic import here)
# Consecutive failed reads before `wait` gives up (a long API outage, not a blip).
MAX_CONSECUTIVE_ERRORS = 10


class ClientError(RuntimeError):
    """Base of everything this client raises on purpose."""


class NotFound(ClientError):
    pass


class AlreadyExists(ClientError):
    pass


class Rejected(ClientError):
    """The API server refused the object (422: schema or CEL rule); the message says why."""


class WaitTimeout(ClientError, TimeoutError):
    pass


class JobFailed(ClientError):
    def __init__(self, job: JobView) -> None:
        super().__init__(f"TrainingJob {job.namespace}/{job.name} failed: {job.failure_message()}")
        self.job = job


def default_namespace(namespace: str | None = None, context_namespace: str | None = None) -> str:
    """Explicit, else the pod's own namespace (in a pod), else the kubeconfig context's, else
    "default"."""
    if namespace:
        return namespace
    if _SA_NAMESPACE.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return _SA_NAMESPACE.read_text().strip()
    return context_namespace or "default"


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, str]:
    """(ApiClient, the context's namespace): kubeconfig argument, else in-cluster, else
    $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    ctx_ns = ""
    if not kubeconfig and not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
        try:
            _, active = config.list_kube_config_contexts(config_file=path)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=path)
                active = next((c for c in contexts if c["name"] == context), active)
            ctx_ns = str((active or {}).get("context", {}).get("namespace") or "")
        except Exception:  # a kubeconfig without contexts listing: the namespace is optional
            ctx_ns = ""
    return client.ApiClient(configuration), ctx_ns


def _api_error(exc: Exception, what: str) -> Exception:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = what
    try:
        message = f"{what}: {json.loads(body)['message']}" if body else what
    except (ValueError, KeyError, TypeError):
        message = f"{what}: {body}"
    if status == 404:
        return NotFound(message)
    if status == 409:
        return AlreadyExists(message)
    if status == 422:
        return Rejected(message)
    return exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TrainingJobClient:
    """One namespace of TrainingJobs. Every method is synchronous and safe to retry."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        api_client: Any = None,
    ) -> None:
        from kubernetes import client

        ctx_ns = ""
        if api_client is None:
            api_client, ctx_ns = load_api_client(kubeconfig, context)
        self.api_client = api_client
        self.namespace = default_namespace(namespace, ctx_ns)
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # --- the TrainingJob ------------------------------------------------------------------------
    def create(
        self,
        manifest: Mapping[str, Any],
        *,
        reattach: Callable[[JobView], None] | None = None,
        dry_run: bool = False,
    ) -> JobView:
        """Create the job. With `reattach`, an existing job of that name is returned instead
        (after `reattach(existing)`, which raises to refuse it): get-or-create for retried tasks."""
        from kubernetes.client.exceptions import ApiException

        body = dict(manifest)
        meta = dict(body.get("metadata") or {})
        meta.setdefault("namespace", self.namespace)
        body["metadata"] = meta
        name, ns = str(meta.get("name", "")), str(meta["namespace"])
        if reattach is not None:
            existing = self.find(name, namespace=ns)
            if existing is not None:
                reattach(existing)
                return existing
        kwargs = {"dry_run": "All"} if dry_run else {}
        try:
            created = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, body, **kwargs
            )
        except ApiException as exc:
            if exc.status == 409 and reattach is not None:
                existing = self.find(name, namespace=ns)
                if existing is not None:
                    reattach(existing)
                    return existing
            raise _api_error(exc, f"creating TrainingJob {ns}/{name}") from exc
        log.info("created TrainingJob %s/%s", ns, name)
        return JobView.from_object(created)

    def find(self, name: str, *, namespace: str | None = None) -> JobView | None:
        from kubernetes.client.exceptions import ApiException

        ns = namespace or self.namespace
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(exc, f"reading TrainingJob {ns}/{name}") from exc
        return JobView.from_object(obj)

    def get(self, name: str) -> JobView:
        job = self.find(name)
        if job is None:
            raise NotFound(f"TrainingJob {self.namespace}/{name} not found")
        return job

    def list_jobs(self) -> list[JobView]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return [JobView.from_object(i) for i in items.get("items") or []]

    def delete(self, name: str, *, wait: bool = False, timeout: float = 120) -> bool:
        """Delete the job (its pods go with it). False when it was already gone."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _api_error(exc, f"deleting TrainingJob {self.namespace}/{name}") from exc
        log.info("deleted TrainingJob %s/%s", self.namespace, name)
        deadline = time.monotonic() + timeout
        while wait and self.find(name) is not None:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"TrainingJob {name} still exists after {timeout:g}s")
            time.sleep(0.5)
        return True

    def _patch_spec(self, name: str, spec: Mapping[str, Any]) -> JobView:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"spec": dict(spec)}
            )
        except ApiException as exc:
            raise _api_error(exc, f"patching TrainingJob {self.namespace}/{name}") from exc
        return JobView.from_object(obj)

    def suspend(self, name: str) -> JobView:
        """spec.suspend=true: the gang checkpoints and releases its nodes (an interruption)."""
        return self._patch_spec(name, {"suspend": True})

    def resume(self, name: str) -> JobView:
        return self._patch_spec(name, {"suspend": False})

    def wait(
        self,
        name: str,
        *,
        until: Callable[[JobView], bool] | None = None,
        timeout: float | None = None,
        poll: float = 2.0,
        on_change: Callable[[str], None] | None = None,
        raise_on_failure: bool = True,
    ) -> JobView:
        """Follow the job until `until(job)` (default: Succeeded or Failed).

        `on_change` gets one line per phase, condition, interruption or checkpoint change (the
        timeline). Raises JobFailed when the job fails (unless `raise_on_failure=False`),
        WaitTimeout after `timeout` seconds, NotFound when it is deleted while waiting.
        """
        done = until or (lambda job: job.terminal)
        timeline, start, errors = Timeline(), time.monotonic(), 0
        while True:
            try:
                job = self.find(name)
                errors = 0
            except Exception as exc:  # API server restart, network blip: keep following
                errors += 1
                if errors > MAX_CONSECUTIVE_ERRORS:
                    raise
                log.warning("reading TrainingJob %s failed (%d in a row): %s", name, errors, exc)
                time.sleep(poll)
                continue
            if job is None:
                raise NotFound(f"TrainingJob {self.namespace}/{name} was deleted while waiting")
            for line in timeline.changes(job):
                if on_change is not None:
                    on_change(line)
            if job.phase == "Failed" and raise_on_failure:
                raise JobFailed(job)
            if done(job):
                return job
            if timeout is not None and time.monotonic() - start > timeout:
                raise WaitTimeout(
                    f"TrainingJob {self.namespace}/{name} is {job.phase} after {timeout:g}s"
                )
            time.sleep(poll)

    # --- pods, logs -------------------------------------------------------------------------------
    def pods(self, name: str, attempt: int | None = None) -> list[PodView]:
        selector = f"{LABEL_JOB}={name}" + (f",{LABEL_ATTEMPT}={attempt}" if attempt else "")
        resp = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )
        items = json.loads(resp.data).get("items") or []
        return sorted(
            (PodView.from_object(p) for p in items), key=lambda p: (p.attempt, p.rank, p.name)
        )

    def logs(
        self,
        name: str,
        *,
        rank: int = 0,
        attempt: int | None = None,
        follow: bool = False,
        tail_lines: int | None = None,
        log_group: str | None = None,
    ) -> Iterator[str]:
        """Log lines of one rank's worker container (default: the newest attempt).

        From the API server while the pod exists; once a restart deleted it, from the CloudWatch
        log group Fluent Bit ships container logs to (`log_group`, else $KUBETRAIN_LOG_GROUP).
        """
        from kubernetes.client.exceptions import ApiException

        pod = rank_pod(self.pods(name, attempt), rank, attempt)
        if pod is None:
            yield from self._archived_logs(name, rank, attempt, tail_lines, log_group)
            return
        kwargs: dict[str, Any] = {"container": WORKER_CONTAINER, "follow": follow}
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        try:
            resp = self.core.read_namespaced_pod_log(
                pod.name, self.namespace, _preload_content=False, **kwargs
            )
        except ApiException as exc:
            raise _api_error(exc, f"logs of pod {pod.name}") from exc
        buffer = b""
        try:
            for chunk in resp.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if buffer:
                yield buffer.decode(errors="replace")
        finally:
            resp.release_conn()

    def _archived_logs(
        self,
        name: str,
        rank: int,
        attempt: int | None,
        tail_lines: int | None,
        log_group: str | None,
    ) -> Iterator[str]:
        from kubetrain.client.logstore import ENV_LOG_GROUP, archived_lines

        which = f"attempt {attempt}" if attempt else "any attempt"
        gone = (
            f"no pod for rank {rank} of {which} of TrainingJob {self.namespace}/{name} (a gang "
            "restart deletes the pods of the attempt it ends)"
        )
        group = log_group or os.environ.get(ENV_LOG_GROUP)
        if not attempt:
            raise NotFound(gone)
        if not group:
            raise NotFound(
                f"{gone}; to read archived logs give the CloudWatch log group Fluent Bit ships "
                f"container logs to (--log-group or ${ENV_LOG_GROUP})"
            )
        pod = f"{name}-{attempt}-{rank}"  # kubetrain.build.names.pod_name
        lines = archived_lines(group, pod, self.namespace, WORKER_CONTAINER, tail_lines=tail_lines)
        if lines is None:
            raise NotFound(f"{gone}; no stream for {pod} in log group {group} either")
        yield from lines

    # --- checkpoints ------------------------------------------------------------------------------
    def checkpoints(self, name: str) -> list[CheckpointRef]:
        """What the cluster knows: status.checkpoint and every rank 0's commit annotation,
        newest step first (deduplicated by id). The store itself: `kubetrain.client.store`."""
        job = self.get(name)
        found: dict[str, CheckpointRef] = {}
        if job.checkpoint is not None:
            found[job.checkpoint.id or job.checkpoint.uri] = job.checkpoint
        for pod in self.pods(name):
            c = pod.committed
            if pod.rank != 0 or not c:
                continue
            ref = CheckpointRef(
                step=int(c.get("step") or 0),
                uri=str(c.get("manifest") or ""),
                kind=str(c.get("kind") or ""),
                id=str(c.get("id") or ""),
                source=f"pod/{pod.name}",
                attempt=pod.attempt,
            )
            found.setdefault(ref.id or ref.uri, ref)
        return sorted(found.values(), key=lambda r: (r.step, r.committed_at), reverse=True)

    def request_checkpoint(
        self,
        name: str,
        *,
        wait: bool = True,
        timeout: float = 600,
        poll: float = 1.0,
        request_id: str | None = None,
    ) -> tuple[str, CheckpointRef | None]:
        """Ask every live pod of the current attempt for a checkpoint now (reason `manual`;
        training continues), the same annotation protocol the operator uses for spot notices.

        Returns (request id, the committed checkpoint or None when not waiting). Raises
        WaitTimeout when rank 0 has not committed within `timeout` seconds.
        """
        job = self.get(name)
        if job.phase not in ("Running", "Checkpointing"):
            raise ClientError(
                f"TrainingJob {self.namespace}/{name} is {job.phase}: a checkpoint can only be "
                "requested while it runs"
            )
        live = [p for p in self.pods(name, job.attempt) if p.live]
        if not live:
            raise ClientError(f"TrainingJob {self.namespace}/{name} has no running pods")
        ident = request_id or f"manual-{uuid.uuid4().hex[:12]}"
        body = {
            "id": ident,
            "reason": REQUEST_REASON_MANUAL,
            "deadline": rfc3339(_now() + dt.timedelta(seconds=timeout)),
            "then": REQUEST_THEN_CONTINUE,
        }
        patch = {"metadata": {"annotations": {ANNOTATION_CHECKPOINT_REQUEST: json.dumps(body)}}}
        for pod in live:
            self.core.patch_namespaced_pod(pod.name, self.namespace, patch)
        log.info("requested checkpoint %s on %d pods of %s", ident, len(live), name)
        if not wait:
            return ident, None
        deadline = time.monotonic() + timeout
        while True:
            for pod in self.pods(name, job.attempt):
                if pod.rank == 0 and pod.committed and pod.committed.get("id") == ident:
                    c = pod.committed
                    return ident, CheckpointRef(
                        step=int(c.get("step") or 0),
                        uri=str(c.get("manifest") or ""),
                        kind=str(c.get("kind") or ""),
                        id=ident,
                        source=f"pod/{pod.name}",
                        attempt=pod.attempt,
                    )
            current = self.get(name)
            if current.terminal or current.attempt != job.attempt:
                raise ClientError(
                    f"TrainingJob {name} moved on ({current.phase}, attempt {current.attempt}) "
                    f"before checkpoint {ident} was committed"
                )
            if time.monotonic() > deadline:
                raise WaitTimeout(f"checkpoint {ident} not committed after {timeout:g}s")
            time.sleep(poll)

    # --- events -------------------------------------------------------------------------------------
    def events(self, name: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=TrainingJob",
            _preload_content=False,
        )
        items: list[dict[str, Any]] = json.loads(resp.data).get("items") or []
        return sorted(
            items,
            key=lambda e: str(
                e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
            ),
        )
