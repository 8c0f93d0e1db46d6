"""The checkpoint protocol's messages: one codec for the operator and the in-container runtime.

Three JSON annotations on worker pods carry the protocol (names in `kubetrain.api.constants`):

- the request, operator -> every pod: `{"id", "reason", "deadline"[, "then"]}`;
- the commit, rank 0 -> operator: `{"id", "step", "manifest", "kind"}`;
- the resume report, rank 0 of a resumed attempt -> operator:
  `{"step", "previousStep", "lostSteps", "manifest", "savedWorldSize", "worldSize"}`;
- progress, rank 0 -> operator, at a bounded rate: `{"step", "time", "savingSeconds"}`.

Standard library only: the runtime imports this inside training images. Parsing never raises: a
malformed annotation is the writer's bug and reads as absent, so neither side stops over it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from kubetrain.api.constants import REQUEST_REASON_REBALANCE, REQUEST_THEN_CONTINUE

KIND_EMERGENCY = "emergency"
KIND_PERIODIC = "periodic"


def _object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _positive(value: object) -> int | None:
    number = _int(value)
    return number if number is not None and number > 0 else None


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> dt.datetime | None:
    """An RFC3339 timestamp as an aware datetime (UTC when it carries no offset), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class CheckpointRequest:
    id: str
    reason: str
    deadline: dt.datetime | None = None
    then: str | None = None  # REQUEST_THEN_CONTINUE: save and keep training

    @property
    def continues(self) -> bool:
        """Save and keep training (a rebalance hint), rather than save and exit 83."""
        if self.then is not None:
            return self.then == REQUEST_THEN_CONTINUE
        return self.reason == REQUEST_REASON_REBALANCE

    def encode(self) -> str:
        body: dict[str, str] = {"id": self.id, "reason": self.reason}
        if self.deadline is not None:
            body["deadline"] = rfc3339(self.deadline)
        if self.then is not None:
            body["then"] = self.then
        return json.dumps(body, sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> CheckpointRequest | None:
        value = _object(raw)
        if not value or not value.get("id"):
            return None
        then = value.get("then")
        return cls(
            id=str(value["id"]),
            reason=str(value.get("reason") or "checkpoint-request"),
            deadline=parse_time(value.get("deadline")),
            then=str(then) if then is not None else None,
        )


@dataclass(frozen=True)
class CheckpointCommitted:
    id: str  # the request answered, or the checkpoint's own id for a periodic save
    step: int
    manifest: str
    kind: str = KIND_PERIODIC  # KIND_PERIODIC | KIND_EMERGENCY

    def encode(self) -> str:
        return json.dumps(
            {"id": self.id, "step": self.step, "manifest": self.manifest, "kind": self.kind},
            sort_keys=True,
        )

    @classmethod
    def decode(cls, raw: str | None) -> CheckpointCommitted | None:
        value = _object(raw)
        if not value or not value.get("id"):
            return None
        kind = KIND_EMERGENCY if value.get("kind") == KIND_EMERGENCY else KIND_PERIODIC
        return cls(
            id=str(value["id"]),
            step=_int(value.get("step")) or 0,
            manifest=str(value.get("manifest") or value.get("uri") or ""),
            kind=kind,
        )


@dataclass(frozen=True)
class Resumed:
    step: int  # the step restored
    previous_step: int | None  # how far the interrupted attempt had got, when known
    manifest: str
    # Ranks that wrote the checkpoint restored, and ranks of this attempt: they differ after an
    # elastic shrink or grow (a resharding restore); None when unknown (nothing restored, or an
    # older runtime).
    saved_world_size: int | None = None
    world_size: int | None = None

    @property
    def lost_steps(self) -> int | None:
        return None if self.previous_step is None else max(0, self.previous_step - self.step)

    @property
    def resharded(self) -> bool:
        """Restored into a different number of ranks than wrote the checkpoint."""
        known = self.saved_world_size is not None and self.world_size is not None
        return known and self.saved_world_size != self.world_size

    def encode(self) -> str:
        body = {
            "step": self.step,
            "previousStep": self.previous_step,
            "lostSteps": self.lost_steps,
            "manifest": self.manifest,
        }
        if self.saved_world_size is not None:
            body["savedWorldSize"] = self.saved_world_size
        if self.world_size is not None:
            body["worldSize"] = self.world_size
        return json.dumps(body, sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> Resumed | None:
        value = _object(raw)
        step = _int(value.get("step")) if value else None
        if value is None or step is None:
            return None
        previous = _int(value.get("previousStep"))
        lost = _int(value.get("lostSteps"))
        if previous is None and lost is not None:
            previous = step + lost
        return cls(
            step=step,
            previous_step=previous,
            manifest=str(value.get("manifest") or ""),
            saved_world_size=_positive(value.get("savedWorldSize")),
            world_size=_positive(value.get("worldSize")),
        )


@dataclass(frozen=True)
class Progress:
    step: int  # steps done
    time: dt.datetime  # when rank 0 finished that step
    saving_seconds: float = 0.0  # training time this process spent in checkpoint saves so far

    def encode(self) -> str:
        body = {"step": self.step, "time": rfc3339(self.time)}
        return json.dumps(body | {"savingSeconds": round(self.saving_seconds, 2)}, sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> Progress | None:
        value = _object(raw)
        step = _int(value.get("step")) if value else None
        when = parse_time(value.get("time")) if value else None
        if value is None or step is None or when is None:
            return None
        saving = value.get("savingSeconds")
        seconds = float(saving) if isinstance(saving, int | float) and saving >= 0 else 0.0
        return cls(step=step, time=when, saving_seconds=seconds)
