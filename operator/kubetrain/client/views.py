"""Typed, read-only views of a TrainingJob and its pods, built from the API server's JSON.

Pure (stdlib only): the CLI's tables, the KFP launcher's outputs and the tests all read jobs
through these, so "what a status means" is written once. `raw` keeps the whole object for
`-o json|yaml` and for fields a newer operator writes that these views do not know yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    COND_FAILED,
    LABEL_ATTEMPT,
    LABEL_RANK,
)

PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
TERMINAL_PHASES = (PHASE_SUCCEEDED, PHASE_FAILED)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def json_annotation(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Condition:
        return cls(
            type=str(d.get("type", "")),
            status=str(d.get("status", "")),
            reason=str(d.get("reason") or ""),
            message=str(d.get("message") or ""),
            last_transition_time=str(d.get("lastTransitionTime") or ""),
        )


@dataclass(frozen=True)
class CheckpointRef:
    """One committed checkpoint. `source`: where it was seen (status, pod annotation, store)."""

    step: int
    uri: str
    kind: str = ""
    id: str = ""
    committed_at: str = ""
    source: str = "status"
    attempt: int | None = None

    @classmethod
    def from_status(cls, d: Mapping[str, Any]) -> CheckpointRef:
        return cls(
            step=int(d.get("step") or 0),
            uri=str(d.get("uri") or ""),
            kind=str(d.get("kind") or ""),
            id=str(d.get("id") or ""),
            committed_at=str(d.get("committedAt") or ""),
        )


@dataclass(frozen=True)
class Interruption:
    node: str
    source: str
    attempt: int | None
    detected_at: str
    requested_at: str
    deadline: str
    committed_at: str
    checkpoint_step: int | None
    lost_steps: int | None
    resumed_at: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Interruption:
        def opt_int(key: str) -> int | None:
            value = d.get(key)
            return int(value) if isinstance(value, int) else None

        return cls(
            node=str(d.get("node") or ""),
            source=str(d.get("source") or d.get("reason") or ""),
            attempt=opt_int("attempt"),
            detected_at=str(d.get("detectedAt") or ""),
            requested_at=str(d.get("requestedAt") or ""),
            deadline=str(d.get("deadline") or ""),
            committed_at=str(d.get("committedAt") or ""),
            checkpoint_step=opt_int("checkpointStep"),
            lost_steps=opt_int("lostSteps"),
            resumed_at=str(d.get("resumedAt") or ""),
        )

    @property
    def key(self) -> str:
        return f"{self.node}|{self.detected_at}|{self.attempt}"

    def describe(self) -> str:
        step = "none" if self.checkpoint_step is None else str(self.checkpoint_step)
        lost = "?" if self.lost_steps is None else str(self.lost_steps)
        return (
            f"interruption on node {self.node} ({self.source or '?'}) detected "
            f"{self.detected_at or '?'}, checkpoint step {step}, lost steps {lost}, "
            f"resumed {self.resumed_at or 'not yet'}"
        )


@dataclass(frozen=True)
class JobView:
    name: str
    namespace: str
    uid: str
    phase: str
    attempt: int
    nodes_ready: int
    nodes_total: int
    failures: int
    interruptions_count: int
    suspended: bool
    checkpoint: CheckpointRef | None
    conditions: tuple[Condition, ...]
    interruptions: tuple[Interruption, ...]
    start_time: str
    completion_time: str
    message: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobView:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        status = obj.get("status") or {}
        nodes, restarts = status.get("nodes") or {}, status.get("restarts") or {}
        ckpt = status.get("checkpoint")
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            phase=str(status.get("phase") or "Pending"),
            attempt=int(status.get("attempt") or 0),
            nodes_ready=int(nodes.get("ready") or 0),
            nodes_total=int(nodes.get("total") or spec.get("nodes") or 0),
            failures=int(restarts.get("failures") or 0),
            interruptions_count=int(restarts.get("interruptions") or 0),
            suspended=bool(spec.get("suspend")),
            checkpoint=CheckpointRef.from_status(ckpt) if isinstance(ckpt, Mapping) else None,
            conditions=tuple(Condition.from_dict(c) for c in status.get("conditions") or []),
            interruptions=tuple(
                Interruption.from_dict(i) for i in status.get("interruptions") or []
            ),
            start_time=str(status.get("startTime") or ""),
            completion_time=str(status.get("completionTime") or ""),
            message=str(status.get("message") or ""),
            raw=dict(obj),
        )

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.raw.get("spec") or {})

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def failure_message(self) -> str:
        failed = self.condition(COND_FAILED)
        if failed and failed.status == "True":
            return f"{failed.reason}: {failed.message}".strip(": ")
        return self.message or "no reason reported"

    def goodput(self) -> float | None:
        """Productive time over wall time, as the operator accounts it (status.goodput.ratio)."""
        ratio = (self.raw.get("status", {}).get("goodput") or {}).get("ratio")
        return float(ratio) if isinstance(ratio, int | float) else None

    def time_split(self) -> dict[str, float]:
        """Where wall time went (status.goodput.total): productive, startup, checkpointing,
        waiting, backoff, recompute... in seconds."""
        total = (self.raw.get("status", {}).get("goodput") or {}).get("total") or {}
        return {str(k): float(v) for k, v in total.items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class PodView:
    name: str
    attempt: int
    rank: int
    phase: str
    node: str
    exit_code: int | None
    deleting: bool
    requested: dict[str, Any] | None
    committed: dict[str, Any] | None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> PodView:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        exit_code = None
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated and "exitCode" in terminated:
                exit_code = int(terminated["exitCode"])
        return cls(
            name=str(meta.get("name", "")),
            attempt=int(labels.get(LABEL_ATTEMPT) or 0),
            rank=int(labels.get(LABEL_RANK) or 0),
            phase=str(status.get("phase") or "Pending"),
            node=str((obj.get("spec") or {}).get("nodeName") or ""),
            exit_code=exit_code,
            deleting=bool(meta.get("deletionTimestamp")),
            requested=json_annotation(annotations.get(ANNOTATION_CHECKPOINT_REQUEST)),
            committed=json_annotation(annotations.get(ANNOTATION_CHECKPOINT_COMMITTED)),
        )

    @property
    def live(self) -> bool:
        return not self.deleting and self.phase not in ("Succeeded", "Failed")


class Timeline:
    """What changed since the last look, once per change: phase, conditions, interruptions."""

    def __init__(self) -> None:
        self._phase = ""
        self._conditions: dict[str, tuple[str, str]] = {}
        self._interruptions: set[str] = set()
        self._checkpoint = ""

    def changes(self, job: JobView) -> list[str]:
        lines: list[str] = []
        if job.phase != self._phase:
            lines.append(f"phase {self._phase or '-'} -> {job.phase} (attempt {job.attempt})")
            self._phase = job.phase
        for cond in job.conditions:
            now = (cond.status, cond.reason)
            if self._conditions.get(cond.type) != now:
                self._conditions[cond.type] = now
                lines.append(
                    f"condition {cond.type}={cond.status} reason={cond.reason} "
                    f"{cond.message}".rstrip()
                )
        for item in job.interruptions:
            if item.key not in self._interruptions:
                self._interruptions.add(item.key)
                lines.append(item.describe())
        if job.checkpoint and job.checkpoint.id != self._checkpoint:
            self._checkpoint = job.checkpoint.id
            lines.append(
                f"checkpoint step {job.checkpoint.step} committed ({job.checkpoint.kind}) "
                f"{job.checkpoint.uri}"
            )
        return lines


def rank_pod(pods: Sequence[PodView], rank: int, attempt: int | None) -> PodView | None:
    """The pod of `rank` in `attempt` (default: the newest attempt that has that rank)."""
    matches = [p for p in pods if p.rank == rank and (attempt is None or p.attempt == attempt)]
    return max(matches, key=lambda p: (p.attempt, not p.deleting), default=None)
