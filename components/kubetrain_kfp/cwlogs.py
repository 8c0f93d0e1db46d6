"""Stream a SageMaker job's CloudWatch logs while it runs, not after it ends.

Every stream whose name starts with `<job name>/` is read from its head with `nextToken`, and new
streams (a spot restart or a second instance adds one) are picked up on the next poll.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from kubetrain_kfp.aws import error_code

log = logging.getLogger("kubetrain_kfp.logs")


class LogTailer:
    """Incremental reader of `/aws/sagemaker/<Kind>Jobs` streams for one job."""

    def __init__(self, logs_client: Any, group: str, job_name: str) -> None:
        self._client = logs_client
        self.group = group
        self.prefix = f"{job_name}/"
        self._tokens: dict[str, str | None] = {}
        self.lines: list[str] = []

    def _streams(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamNamePrefix": self.prefix}
        while True:
            page = self._client.describe_log_streams(**kwargs)
            names.extend(s["logStreamName"] for s in page.get("logStreams", []))
            token = page.get("nextToken")
            if not token:
                return names
            kwargs["nextToken"] = token

    def poll(self) -> list[str]:
        """Emit and return the lines written since the previous call; never raises on AWS errors."""
        new: list[str] = []
        try:
            for stream in self._streams():
                new.extend(self._read(stream))
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":  # no logs yet: not an error
                log.debug("cannot read CloudWatch logs of %s: %s", self.prefix, exc)
        self.lines.extend(new)
        return new

    def _read(self, stream: str) -> list[str]:
        out: list[str] = []
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            token = self._tokens.get(stream)
            if token:
                kwargs["nextToken"] = token
            page = self._client.get_log_events(**kwargs)
            for event in page.get("events", []):
                line = f"[{stream}] {event.get('message', '').rstrip()}"
                log.info("%s", line)
                out.append(line)
            next_token = page.get("nextForwardToken")
            self._tokens[stream] = next_token
            if not next_token or next_token == token or not page.get("events"):
                return out
