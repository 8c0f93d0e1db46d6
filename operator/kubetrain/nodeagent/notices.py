"""Pure parts of the node agent: IMDS notice parsing and the Node patch that records a notice.

No I/O here, so every rule (what counts as a notice, how a time becomes a taint value, when a Node
already carries a notice) is table-tested in milliseconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kubetrain.api import constants as c

# IMDS paths (relative to the endpoint); 404 on either means "no notice".
SPOT_INSTANCE_ACTION_PATH: Final = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH: Final = "/latest/meta-data/events/recommendations/rebalance"

SPOT_ACTIONS: Final = frozenset({"terminate", "stop", "hibernate"})
TAINT_EFFECT: Final = "NoSchedule"

_LABEL_VALUE_MAX: Final = 63
_NOT_LABEL_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]+")
_EDGE_NON_ALNUM: Final = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


class NoticeError(ValueError):
    """IMDS answered 200 with a body that is not the documented notice shape."""


@dataclass(frozen=True)
class Notice:
    """One IMDS notice as the agent records it on its Node.

    `key` identifies the notice (the agent patches once per distinct key); `body` is the JSON text
    stored verbatim in the annotation so the operator and humans see exactly what IMDS said.
    """

    kind: str  # "spot" | "rebalance"
    taint_key: str
    annotation_key: str
    time: str  # RFC 3339: the interruption time (spot) or the notice time (rebalance)
    body: str
    action: str | None = None  # spot only: terminate | stop | hibernate
    # Spot: a notice with another action or time replaces the recorded one (it is what will
    # happen). Rebalance: the first recommendation stands; IMDS implementations that restamp
    # noticeTime on every read (AEMM does, with its defaults) must not cause a patch per poll.
    replaces_recorded: bool = True

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """Notices with the same key are the same notice: patched once."""
        if not self.replaces_recorded:
            return (self.kind, None, None)
        return (self.kind, self.time, self.action)

    @property
    def taint_value(self) -> str:
        return label_value(self.time)


def _parse_time(value: object, field: str, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise NoticeError(f"{path}: field {field!r} must be an RFC 3339 string, got {value!r}")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise NoticeError(f"{path}: field {field!r} is not RFC 3339: {value!r}") from exc
    return value


def _load_object(body: str, path: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise NoticeError(f"{path}: body is not JSON: {body[:200]!r}") from exc
    if not isinstance(doc, dict):
        raise NoticeError(f"{path}: body must be a JSON object, got {body[:200]!r}")
    return doc


def parse_instance_action(body: str) -> Notice:
    """`{"action": "terminate"|"stop"|"hibernate", "time": "<RFC 3339>"}` -> a spot Notice."""
    path = SPOT_INSTANCE_ACTION_PATH
    doc = _load_object(body, path)
    action = doc.get("action")
    if action not in SPOT_ACTIONS:
        raise NoticeError(
            f"{path}: field 'action' must be one of {sorted(SPOT_ACTIONS)}, got {action!r}"
        )
    return Notice(
        kind="spot",
        taint_key=c.TAINT_KUBETRAIN_SPOT_ITN,
        annotation_key=c.ANNOTATION_NODE_SPOT_NOTICE,
        time=_parse_time(doc.get("time"), "time", path),
        body=json.dumps(doc, sort_keys=True, separators=(",", ":")),
        action=str(action),
    )


def parse_rebalance(body: str) -> Notice:
    """`{"noticeTime": "<RFC 3339>"}` -> a rebalance Notice."""
    path = REBALANCE_PATH
    doc = _load_object(body, path)
    return Notice(
        kind="rebalance",
        taint_key=c.TAINT_KUBETRAIN_REBALANCE,
        annotation_key=c.ANNOTATION_NODE_REBALANCE_NOTICE,
        time=_parse_time(doc.get("noticeTime"), "noticeTime", path),
        body=json.dumps(doc, sort_keys=True, separators=(",", ":")),
        replaces_recorded=False,
    )


def label_value(text: str) -> str:
    """Make `text` a valid label/taint value: ':' and other characters become '-', at most 63
    characters, alphanumeric at both ends ("2026-11-22T05:40:00Z" -> "2026-11-22T05-40-00Z")."""
    value = _NOT_LABEL_CHARS.sub("-", text.replace(":", "-"))[:_LABEL_VALUE_MAX]
    return _EDGE_NON_ALNUM.sub("", value)


def node_patch(node: dict[str, Any], notice: Notice) -> dict[str, Any] | None:
    """The strategic-merge patch that records `notice` on `node`, or None when it already does.

    Node taints are an atomic list, so the patch carries the whole list (others' taints kept in
    order, ours replaced or appended) and the node's resourceVersion: a concurrent writer (NTH,
    Karpenter, kubelet) makes the API server answer 409 instead of losing its taint.
    """
    metadata = node.get("metadata") or {}
    taints: list[dict[str, Any]] = list((node.get("spec") or {}).get("taints") or [])
    ours = {"key": notice.taint_key, "value": notice.taint_value, "effect": TAINT_EFFECT}
    annotations = metadata.get("annotations") or {}
    present = [t for t in taints if t.get("key") == notice.taint_key]
    if not notice.replaces_recorded and present and notice.annotation_key in annotations:
        return None
    if (
        annotations.get(notice.annotation_key) == notice.body
        and len(present) == 1
        and {k: present[0].get(k) for k in ("key", "value", "effect")} == ours
    ):
        return None
    new_taints = [t for t in taints if t.get("key") != notice.taint_key] + [ours]
    patch_metadata: dict[str, Any] = {"annotations": {notice.annotation_key: notice.body}}
    if metadata.get("resourceVersion"):
        patch_metadata["resourceVersion"] = metadata["resourceVersion"]
    return {"metadata": patch_metadata, "spec": {"taints": new_taints}}
