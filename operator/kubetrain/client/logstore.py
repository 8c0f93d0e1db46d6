"""Logs of pods that no longer exist, from CloudWatch Logs.

A gang restart deletes every pod of the attempt, and the API server forgets their logs with
them. On EKS, container logs are shipped to CloudWatch by Fluent Bit (Container Insights): one
stream per container, named after the kubelet's log file, `<prefix>.var.log.containers.
<pod>_<namespace>_<container>-<container id>.log` (the default `log_stream_prefix` is the host
name), each event a JSON record whose `log` field is the line. `kubetrain logs --previous`
reads rank N of attempt A back from there (`--log-group` or $KUBETRAIN_LOG_GROUP).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

ENV_LOG_GROUP = "KUBETRAIN_LOG_GROUP"


def container_log_marker(pod: str, namespace: str, container: str) -> str:
    """The part of a Fluent Bit stream name (the kubelet's log file name) that names one
    container of one pod."""
    return f"{pod}_{namespace}_{container}-"


def _logs_client(client: Any) -> Any:
    if client is not None:
        return client
    import boto3

    return boto3.client("logs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def streams_of(client: Any, group: str, marker: str) -> list[dict[str, Any]]:
    """Streams of the group whose name contains `marker`, oldest first (a restarted container
    writes a new stream)."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"logGroupName": group}
    while True:
        page = client.describe_log_streams(**kwargs)
        found += [s for s in page.get("logStreams", []) if marker in s["logStreamName"]]
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    return sorted(found, key=lambda s: (s.get("firstEventTimestamp") or 0, s["logStreamName"]))


def _line(message: str) -> str:
    """The container's line: Fluent Bit's JSON record's `log` field, or the message itself."""
    try:
        record = json.loads(message)
    except ValueError:
        return message.rstrip("\n")
    if isinstance(record, dict) and isinstance(record.get("log"), str):
        return str(record["log"]).rstrip("\n")
    return message.rstrip("\n")


def archived_lines(
    group: str,
    pod: str,
    namespace: str,
    container: str = "worker",
    *,
    client: Any = None,
    tail_lines: int | None = None,
) -> list[str] | None:
    """Every archived line of the container, in order; None when the group has no stream for it."""
    logs = _logs_client(client)
    streams = streams_of(logs, group, container_log_marker(pod, namespace, container))
    if not streams:
        return None
    lines: list[str] = []
    for stream in streams:
        lines += list(_read(logs, group, stream["logStreamName"]))
    return lines[-tail_lines:] if tail_lines else lines


def _read(client: Any, group: str, stream: str) -> Iterator[str]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "startFromHead": True,
        }
        if token:
            kwargs["nextToken"] = token
        page = client.get_log_events(**kwargs)
        for event in page.get("events", []):
            yield _line(str(event.get("message", "")))
        next_token = page.get("nextForwardToken")
        if not page.get("events") or not next_token or next_token == token:
            return
        token = next_token
